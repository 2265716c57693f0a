"""Evaluation pieces shared by the task families: options, model checks, predictions.

How each family scores a split lives with it (`Task.evaluate`):
`SentencePredictionTask` (GLUE, IMDb: argmax or the regression score, then
`metrics.compute_metrics`) and `QuestionAnsweringTask` (SQuAD: windows, n-best
decoding, the official metrics).

Metrics are fractions in [0, 1] (the CLI prints them x100, as the paper's
tables do: `distil_tf.cli.tasks.format_metrics_table`).

Example:

>>> model, tokenizer = load_model_and_tokenizer("runs/sst2/model")
>>> check_model_matches_task(model, get_task("glue/sst2"), "runs/sst2/model")
>>> metrics = build_task("glue/sst2").evaluate(model, tokenizer, examples, EvaluationOptions())
"""

import dataclasses

from distil_tf.heads import CLASSIFICATION
from distil_tf.tasks import squad_decoding


@dataclasses.dataclass
class EvaluationOptions:
    # Sequences per prediction batch.
    batch_size: int = 64
    # 0: the length the model was fine-tuned with, else the task's default.
    max_seq_length: int = 0
    # SQuAD decoding (BERT's run_squad defaults).
    n_best_size: int = squad_decoding.DEFAULT_N_BEST_SIZE
    max_answer_length: int = squad_decoding.DEFAULT_MAX_ANSWER_LENGTH
    null_score_diff_threshold: float = 0.0
    doc_stride: int = 128
    max_query_length: int = 64


def check_model_matches_task(model, spec, where):
    """Raise a one-line `ValueError` unless `model` is a task model with `spec`'s head.

    Args:
        model: the loaded model.
        spec: `TaskSpec`.
        where: str naming the model (its directory) in the message.
    """
    from distil_tf.models.task_model import TaskModel

    if not isinstance(model, TaskModel):
        raise ValueError(
            f"{where} is an encoder without a task head: fine-tune it first "
            f"(distil-tf finetune --task {spec.name} --model {where} --out DIR)"
        )
    if model.head_type != spec.head_type:
        raise ValueError(
            f"{where} has a {model.head_type} head but task '{spec.name}' needs a {spec.head_type} head"
        )
    if spec.head_type == CLASSIFICATION and model.num_classes != len(spec.label_names):
        raise ValueError(
            f"{where} predicts {model.num_classes} classes but task '{spec.name}' has "
            f"{len(spec.label_names)} ({', '.join(spec.label_names)})"
        )
    if model.task_name and model.task_name != spec.name:
        raise ValueError(f"{where} was fine-tuned for '{model.task_name}', not '{spec.name}'")


def predict_outputs(model, dataset):
    """Concatenated `TaskModel` outputs over `dataset`, numpy arrays."""
    # Keras predict ignores the labels of (features, labels) batches. Its
    # progress bar: scoring SQuAD dev (10.8k windows) takes many minutes on a CPU.
    return model.predict(dataset, verbose="auto")
