"""`create_export_module`: the export module of a model's task family.

One module per family, over `export_base.ExportModuleBase` (Model Garden's
`export_base.py` shape):

- classification and regression heads (GLUE, IMDb):
  `sentence_prediction_module.SentencePredictionExportModule`;
- span heads (SQuAD): `question_answering_module.QuestionAnsweringExportModule`;
- a bare encoder (sentence embeddings): `embedding_module.EmbeddingExportModule`
  (`exporter.export_model` builds it; it takes pooling options instead).

The task objects name the same classes (`Task.export_module_class`); the
export picks by head type because `export/` must not import `tasks/`
(training code), and the head type is what a saved model records.
"""

from distil_tf.data import task_specs as registry
from distil_tf.export.question_answering_module import (
    DEFAULT_MAX_ANSWER_LENGTH,
    DEFAULT_MAX_WINDOWS,
    QuestionAnsweringExportModule,
)
from distil_tf.export.sentence_prediction_module import SentencePredictionExportModule
from distil_tf.heads import CLASSIFICATION, REGRESSION, SPAN

# The export's length for a model that recorded none (older or external
# directories); a trained model is exported at its training length.
DEFAULT_MAX_SEQUENCE_LENGTH = 128

MODULE_BY_HEAD = {
    CLASSIFICATION: SentencePredictionExportModule,
    REGRESSION: SentencePredictionExportModule,
    SPAN: QuestionAnsweringExportModule,
}


def resolve_pair(task_name, head_type, pair=None):
    """Whether inputs are text pairs: explicit `pair`, else the task registry.

    Raises:
        ValueError: the task is not registered and `pair` is not given.
    """
    if head_type == SPAN:
        return True
    if task_name in registry.TASKS:
        is_pair = registry.get_task(task_name).is_pair
        if pair is not None and bool(pair) != is_pair:
            raise ValueError(
                f"pair={pair} contradicts task '{task_name}' (registered with is_pair={is_pair})"
            )
        return is_pair
    if pair is None:
        raise ValueError(
            f"task '{task_name}' is not in the task registry, so whether it reads text "
            "pairs is unknown: pass pair=True or pair=False (--pair / --no-pair)"
        )
    return bool(pair)


def create_export_module(
    model,
    tokenizer,
    max_sequence_length=DEFAULT_MAX_SEQUENCE_LENGTH,
    pair=None,
    max_query_length=None,
    max_answer_length=DEFAULT_MAX_ANSWER_LENGTH,
    doc_stride=None,
    max_windows=DEFAULT_MAX_WINDOWS,
    options=None,
    preprocessing=None,
    name=None,
):
    """The export module of `model`'s task family, with TF Serving signatures.

    Args:
        model: a built `TaskModel` (attributes `head_type`, `task_name`,
            `label_names`, `num_classes`, `encoder`).
        tokenizer: its `BertWordPieceTokenizer`.
        max_sequence_length: int. Longest packed input, special tokens included.
        pair: bool or None. Text-pair inputs; `None` asks the task registry
            (span models always read (question, context) pairs).
        max_query_length, max_answer_length, doc_stride, max_windows: span
            heads only (see `QuestionAnsweringExportModule`); ignored otherwise.
        options: `InferenceOptions` or None (the fused float32 graph).
        preprocessing: `PreprocessingConfig` or None: the training's cleaning
            and truncation, recorded in the model directory.

    Returns:
        `SentencePredictionExportModule` or `QuestionAnsweringExportModule`.

    Raises:
        ValueError: not a task model, an unregistered task without `pair`, or
            lengths the family cannot serve.

    Examples:
    >>> module = create_export_module(model, tokenizer, max_sequence_length=128)
    >>> tf.saved_model.save(module, "/models/sst2/1", signatures=module.get_signatures())
    """
    head_type = getattr(model, "head_type", None)
    if head_type not in MODULE_BY_HEAD:
        raise ValueError(
            f"only task models can be exported (got {type(model).__name__}); "
            "fine-tune the encoder on a task first (distil-tf finetune)"
        )
    if head_type == SPAN:
        return QuestionAnsweringExportModule(
            model, tokenizer, max_sequence_length, max_query_length=max_query_length,
            max_answer_length=max_answer_length, doc_stride=doc_stride, max_windows=max_windows,
            options=options, preprocessing=preprocessing, name=name,
        )
    return SentencePredictionExportModule(
        model, tokenizer, max_sequence_length, pair=resolve_pair(model.task_name, head_type, pair),
        options=options, preprocessing=preprocessing, name=name,
    )
