"""`Task`: one object per task family owns its inputs, head, loss and evaluation.

In the shape of TF Model Garden's `official/core/base_task.py`: the drivers
(`distil_tf.training.finetune`) ask a task for its training items, its
`tf.data` pipeline, its model, its compile arguments and its metrics, and
never branch on the head type themselves. The families:

- `SentencePredictionTask` (`sentence_prediction.py`): GLUE and IMDb,
  single sentences or pairs, classification or regression (STS-B);
- `QuestionAnsweringTask` (`question_answering.py`): SQuAD v1.1/v2.0,
  windowed features, span loss, n-best decoding and the official metrics.

`registry.build_task(name)` returns the family's object for a task name.

Example:

>>> task = registry.build_task("glue/sst2")
>>> model = task.build_model(encoder)
>>> model.compile(optimizer="adam", **task.compile_arguments())
>>> make = task.train_dataset_factory(examples, tokenizer, 128, seed=42)
>>> metrics = task.evaluate(model, tokenizer, dev_examples, EvaluationOptions())
"""

import abc

from distil_tf.tasks import evaluation, task_inputs, task_losses


class Task(abc.ABC):
    """A task family's behaviour for one `TaskSpec` (`registry.get_task`)."""

    # Whether featurizing the task needs the model's vocab.txt (SQuAD's
    # windowing re-tokenizes contexts from the vocabulary file).
    needs_vocab_file = False

    def __init__(self, spec):
        self.spec = spec

    def __repr__(self):
        return f"{type(self).__name__}({self.spec.name!r})"

    @property
    def name(self):
        return self.spec.name

    @property
    def head_type(self):
        return self.spec.head_type

    # -- inputs ---------------------------------------------------------------

    def default_sequence_length(self):
        """Tokens per sequence when none is given (GLUE 128, SQuAD 384, IMDb 512)."""
        return task_inputs.default_sequence_length(self.spec)

    def preprocessing_for(self, sequence_length):
        """The `PreprocessingConfig` recorded with the model (export packs texts with it)."""
        return task_inputs.preprocessing_for(self.spec, sequence_length)

    @abc.abstractmethod
    def training_items(self, examples, tokenizer, vocab_path, sequence_length, doc_stride=128,
                       max_query_length=64):
        """What a training pass iterates over: the examples themselves, or SQuAD windows.

        Args:
            examples: the training split's examples (`TextExample`s or `SquadQuestion`s).
            tokenizer: the model's `BertWordPieceTokenizer`.
            vocab_path: its `vocab.txt` when `needs_vocab_file`, else unused.
            sequence_length: int, tokens per sequence.
            doc_stride, max_query_length: SQuAD windowing (BERT's run_squad).
        """

    def training_windows(self, items):
        """How many windows `training_items` made; None for tasks trained on whole examples."""
        return None

    @abc.abstractmethod
    def batches(self, items, tokenizer, sequence_length, batch_size, shuffle=False, seed=None, trim=True,
                drop_remainder=False, group_by_length_batches=0):
        """`(features, labels)` batches of `items`.

        `group_by_length_batches` > 0: rows of similar length batched
        together (`task_inputs.group_by_length`; training only; a task
        whose sequences all fill the length may ignore it).

        Features: `{"token_ids", "segment_ids", "padding_mask"}` int32
        `[batch, seq]`; labels: a dict keyed like the `TaskModel` outputs
        they train (`task_losses.output_keys(head_type)`), each `[batch]`.
        """

    def train_dataset_factory(self, items, tokenizer, sequence_length, seed, trim=True, drop_remainder=False,
                              group_by_length_batches=0):
        """`make(input_context, batch_size)`: one shuffled pass over `items`, sharded per input pipeline.

        Args:
            items: `training_items(...)`.
            tokenizer: the model's WordPiece tokenizer (text tasks).
            sequence_length: int.
            seed: int. Shuffle seed (the same order on a resumed run).
            trim: bool. Trim batches to their longest row (not for XLA).
            drop_remainder: bool. Static batch shapes (TPU/XLA).
            group_by_length_batches: int. See `batches`; 0 is off.
        """

        def make(input_context, batch_size):
            shard = items
            if input_context is not None and input_context.num_input_pipelines > 1:
                shard = items[input_context.input_pipeline_id :: input_context.num_input_pipelines]
            return self.batches(shard, tokenizer, sequence_length, batch_size, shuffle=True, seed=seed,
                                trim=trim, drop_remainder=drop_remainder,
                                group_by_length_batches=group_by_length_batches)

        return make

    # -- model and loss -------------------------------------------------------

    @abc.abstractmethod
    def num_classes(self):
        """Classes of the task head; None for heads that are not classifiers."""

    def build_model(self, encoder_or_model):
        """A `TaskModel` for this task from an encoder or another task model's encoder.

        A task model already trained for this task is returned as is
        (training continues from its head); any other is reduced to its
        encoder, which gets a fresh head.
        """
        from distil_tf.models.task_model import TaskModel

        if isinstance(encoder_or_model, TaskModel):
            if encoder_or_model.task_name == self.name and encoder_or_model.head_type == self.head_type:
                return encoder_or_model
            encoder_or_model = encoder_or_model.encoder
        return TaskModel.from_encoder(
            encoder_or_model, self.head_type, num_classes=self.num_classes(), task_name=self.name,
            label_names=list(self.spec.label_names) or None,
        )

    def compile_arguments(self):
        """`loss`, `loss_weights` and `metrics` for `TaskModel.compile` (Keras fit)."""
        return task_losses.compile_arguments(self.head_type)

    def supervised_loss(self, labels, outputs):
        """The head's float32 scalar loss of `outputs` (a `TaskModel` output dict) against `labels`.

        The same function the task distiller's hard-label term uses
        (`task_losses.supervised_loss`): a mean over the global batch.
        """
        return task_losses.supervised_loss(self.head_type, labels, outputs)

    # -- export ---------------------------------------------------------------

    @abc.abstractmethod
    def export_module(self, model, tokenizer, sequence_length, options=None, where="MODEL", **family_options):
        """The family's TF Serving module for `model` (`distil_tf.export`): what `distil-tf export` writes.

        Packs text with this task's preprocessing at `sequence_length` (the
        one training used), so the served model sees the trained tokens.
        `export.create_export_module` picks the same class from a saved
        model's head type, where no task object is at hand.
        """

    # -- evaluation -----------------------------------------------------------

    def check_model(self, model, where):
        """Raise a one-line `ValueError` unless `model` is a task model with this task's head."""
        evaluation.check_model_matches_task(model, self.spec, where)

    @abc.abstractmethod
    def evaluate(self, model, tokenizer, examples, options, vocab_path=None):
        """Metrics of `model` on `examples` with the task's official metrics.

        Args:
            model: a `TaskModel` matching the task (see `check_model`).
            tokenizer: its `BertWordPieceTokenizer`.
            examples: the split's examples.
            options: `evaluation.EvaluationOptions`.
            vocab_path: the model's `vocab.txt` when `needs_vocab_file`.

        Returns:
            `{metric: value}` (fractions in [0, 1]) plus `"examples"`, the
            count scored.
        """
