"""`SentencePredictionTask`: GLUE and IMDb, one sentence or a pair, classification or regression.

Inputs are `TextExample`s packed by the model's tokenizer
(`task_inputs.text_batches`: GLUE truncates round robin, IMDb keeps head +
tail); the head scores the `[CLS]` vector: class logits `[batch, classes]`
(sparse cross-entropy) or one score `[batch]` (STS-B, mean squared error).
Evaluation takes the argmax (or the score) of every example and the task's
official metrics (`metrics.compute_metrics`: Matthews for CoLA, Pearson and
Spearman for STS-B, F1 and accuracy for MRPC/QQP, accuracy otherwise).

Example:

>>> task = registry.build_task("glue/stsb")
>>> task.num_classes()    # a regression head
>>> task.evaluate(model, tokenizer, dev_examples, EvaluationOptions())["pearson"]
"""

import numpy as np

from distil_tf.heads import CLASSIFICATION, REGRESSION
from distil_tf.tasks import evaluation, task_inputs
from distil_tf.tasks import metrics as metrics_lib
from distil_tf.tasks.base_task import Task


class SentencePredictionTask(Task):
    """A GLUE or IMDb task: `TextExample`s in, one label or score per example out."""

    def training_items(self, examples, tokenizer, vocab_path, sequence_length, doc_stride=128,
                       max_query_length=64):
        """The examples themselves: each is packed into one sequence per batch."""
        return list(examples)

    def batches(self, items, tokenizer, sequence_length, batch_size, shuffle=False, seed=None, trim=True,
                drop_remainder=False, group_by_length_batches=0):
        """Batches of `TextExample`s; labels `{"logits": [batch]}` (int class ids or float scores)."""
        return task_inputs.text_batches(self.spec, items, tokenizer, sequence_length, batch_size,
                                        shuffle=shuffle, seed=seed, trim=trim, drop_remainder=drop_remainder,
                                        group_by_length_batches=group_by_length_batches)

    def num_classes(self):
        return len(self.spec.label_names) if self.head_type == CLASSIFICATION else None

    def export_module(self, model, tokenizer, sequence_length, options=None, where="MODEL"):
        """A `SentencePredictionExportModule`: text (and text_pair) in, logits/labels or score out."""
        from distil_tf.export.sentence_prediction_module import SentencePredictionExportModule

        self.check_model(model, where)
        return SentencePredictionExportModule(model, tokenizer, sequence_length, pair=self.spec.is_pair,
                                              options=options, preprocessing=self.preprocessing_for(sequence_length))

    def predict(self, model, tokenizer, examples, sequence_length, batch_size=64):
        """Per-example predictions: class ids `[n]` (argmax of the logits) or regression scores `[n]`."""
        dataset = self.batches(examples, tokenizer, sequence_length, batch_size)
        logits = np.asarray(evaluation.predict_outputs(model, dataset)["logits"])
        return logits if self.head_type == REGRESSION else np.argmax(logits, axis=-1)

    def evaluate(self, model, tokenizer, examples, options, vocab_path=None):
        """`Task.evaluate`; adds `"score"`, the task's primary metric."""
        length = options.max_seq_length or self.default_sequence_length()
        predictions = self.predict(model, tokenizer, examples, length, options.batch_size)
        labels = np.asarray([example.label for example in examples])
        result = metrics_lib.compute_metrics(self.spec, predictions, labels)
        result["examples"] = len(examples)
        return result
