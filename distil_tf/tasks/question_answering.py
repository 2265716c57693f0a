"""`QuestionAnsweringTask`: SQuAD v1.1 and v2.0, extractive answers over windowed contexts.

Questions become windows of `[CLS] question [SEP] context [SEP]` (BERT's
`run_squad.py`: `doc_stride` tokens between window starts, questions cut to
`max_query_length`), featurized from the model's `vocab.txt`. Training
windows carry the first gold answer's token positions; the span head gives
start/end logits `[batch, seq]`, trained with the mean of the two
cross-entropies. Evaluation decodes the n-best spans of every question
across its windows (`squad_decoding.decode_predictions`: n-best 20, answers
of at most 30 WordPieces; v2.0 predicts "" when the null score beats the
best span by more than the threshold) and runs the official scripts
(`metrics.squad_metrics`).

Example:

>>> task = registry.build_task("squad/v1.1")
>>> windows = task.training_items(questions, tokenizer, "model/vocab.txt", 384)
>>> task.evaluate(model, tokenizer, dev_questions, EvaluationOptions(), "model/vocab.txt")["f1"]
"""

from distil_tf.tasks import evaluation, squad_decoding
from distil_tf.tasks import metrics as metrics_lib
from distil_tf.tasks.base_task import Task


def _do_lower_case(tokenizer):
    # The windowing re-tokenizes from vocab.txt: it must case texts as the model's tokenizer does.
    return getattr(tokenizer, "hf_lowercase", True)


class QuestionAnsweringTask(Task):
    """A SQuAD task: `SquadQuestion`s in, answer spans (or "" on v2.0) out."""

    needs_vocab_file = True

    @property
    def version(self):
        """The SQuAD version, "1.1" or "2.0": the official evaluation script to score with."""
        return self.name.split("/v")[1]

    def windows(self, questions, vocab_path, sequence_length, do_lower_case, training, doc_stride=128,
                max_query_length=64):
        """(`squad_lib.SquadExample`s, windowed features) of `questions`.

        Training windows carry the first gold answer's token positions (BERT's
        `run_squad.py`); inference windows carry none.

        Raises:
            ValueError: no window at all (e.g. every context empty).
        """
        from distil_tf.data import squad

        examples = squad.to_squad_examples(questions, answer_index=0 if training else None)
        features = squad.convert_to_features(
            examples, str(vocab_path), sequence_length, doc_stride, max_query_length,
            do_lower_case=do_lower_case,
        )
        if not features:
            raise ValueError(f"no SQuAD windows from {len(questions)} questions")
        return examples, features

    def training_items(self, examples, tokenizer, vocab_path, sequence_length, doc_stride=128,
                       max_query_length=64):
        """The training windows of `examples` (one question may span several)."""
        _, features = self.windows(examples, vocab_path, sequence_length, _do_lower_case(tokenizer),
                                   training=True, doc_stride=doc_stride, max_query_length=max_query_length)
        return features

    def training_windows(self, items):
        return len(items)

    def batches(self, items, tokenizer, sequence_length, batch_size, shuffle=False, seed=None, trim=True,
                drop_remainder=False, group_by_length_batches=0):
        """Batches of SQuAD windows, labels `{"start_logits", "end_logits"}` token positions `[batch]`.

        The windows are already ids of their full length (`tokenizer`,
        `sequence_length`, `trim` and `group_by_length_batches` do not
        apply): a context fills most of a window, so trimming padding or
        grouping by length would save little.
        """
        from distil_tf.data import squad

        dataset = squad.make_squad_dataset(
            items, batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder
        )

        def relabel(features, labels):
            # Keyed like the span head's outputs, as `compile(loss={...})` and the distiller expect.
            return features, {"start_logits": labels["start_positions"], "end_logits": labels["end_positions"]}

        return dataset.map(relabel)

    def num_classes(self):
        return None

    def export_module(self, model, tokenizer, sequence_length, options=None, doc_stride=None, max_query_length=None,
                      where="MODEL"):
        """A `QuestionAnsweringExportModule`: question and context in, answer and its offsets out.

        `doc_stride` and `max_query_length` are training's windowing (None:
        the module's defaults for `sequence_length`).
        """
        from distil_tf.export.question_answering_module import QuestionAnsweringExportModule

        self.check_model(model, where)
        return QuestionAnsweringExportModule(model, tokenizer, sequence_length, max_query_length=max_query_length,
                                             doc_stride=doc_stride, options=options,
                                             preprocessing=self.preprocessing_for(sequence_length))

    def evaluate(self, model, tokenizer, examples, options, vocab_path=None):
        """`Task.evaluate` on `SquadQuestion`s; adds `"windows"`, the features scored."""
        from distil_tf.data import squad

        if vocab_path is None:
            raise ValueError("SQuAD evaluation needs the model's vocab.txt (pass vocab_path)")
        length = options.max_seq_length or self.default_sequence_length()
        squad_examples, features = self.windows(
            examples, vocab_path, length, _do_lower_case(tokenizer), training=False,
            doc_stride=options.doc_stride, max_query_length=options.max_query_length,
        )
        outputs = evaluation.predict_outputs(model, self.batches(features, tokenizer, length, options.batch_size))
        predictions, _, null_score_diffs = squad_decoding.decode_predictions(
            squad_examples, features, outputs["start_logits"], outputs["end_logits"],
            n_best_size=options.n_best_size,
            max_answer_length=options.max_answer_length,
            do_lower_case=_do_lower_case(tokenizer),
            version_2_with_negative=self.version == "2.0",
            null_score_diff_threshold=options.null_score_diff_threshold,
        )
        result = metrics_lib.squad_metrics(
            squad.to_official_dataset(examples), predictions, version=self.version,
            # The official v2.0 script's threshold search takes any score that
            # grows with "no answer"; the null-minus-best difference is what
            # BERT's run_squad writes as null_odds for it.
            no_answer_probabilities=null_score_diffs if self.version == "2.0" else None,
        )
        result["examples"] = len(examples)
        result["windows"] = len(features)
        return result
