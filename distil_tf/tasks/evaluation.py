"""Score a task model on a task split with the task's official metrics.

GLUE and IMDb: argmax (or the regression score) of every example, then
`distil_tf.tasks.metrics.compute_metrics` (Matthews for CoLA, Pearson and
Spearman for STS-B, F1 and accuracy for MRPC/QQP, accuracy otherwise).
SQuAD: windowed features without answer positions, start/end logits, n-best
decoding (`squad_decoding.decode_predictions`: n-best 20, answers of at most
30 WordPieces; v2.0 predicts "" when the null score beats the best span by
more than the threshold) and the official evaluation (`squad_metrics`).

Metrics are fractions in [0, 1]; `format_table` shows them x100, as the
paper's tables do.

Example:

>>> model, tokenizer = load_model_and_tokenizer("runs/sst2/model")
>>> check_model_matches_task(model, get_task("glue/sst2"), "runs/sst2/model")
>>> metrics = evaluate_examples(model, tokenizer, spec, examples, EvaluationOptions())
"""

import dataclasses

import numpy as np

from distil_tf.tasks import metrics as metrics_lib
from distil_tf.tasks import registry, squad_decoding, task_inputs


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
    if spec.head_type == registry.CLASSIFICATION and model.num_classes != len(spec.label_names):
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


def predict_examples(model, tokenizer, spec, examples, sequence_length, batch_size=64):
    """Per-example predictions of a GLUE/IMDb task model: class ids `[n]` or scores `[n]`."""
    dataset = task_inputs.text_batches(spec, examples, tokenizer, sequence_length, batch_size)
    logits = np.asarray(predict_outputs(model, dataset)["logits"])
    return logits if spec.head_type == registry.REGRESSION else np.argmax(logits, axis=-1)


def evaluate_examples(model, tokenizer, spec, examples, options, vocab_path=None):
    """Metrics of `model` on `examples` (`TextExample`s or `SquadQuestion`s).

    Args:
        model: a `TaskModel` matching `spec` (see `check_model_matches_task`).
        tokenizer: its `BertWordPieceTokenizer`.
        spec: `TaskSpec`.
        examples: the split's examples.
        options: `EvaluationOptions`.
        vocab_path: the model's `vocab.txt` (SQuAD featurization).

    Returns:
        `{metric: value}` plus `"examples"` (count scored); GLUE/IMDb add
        `"score"`, SQuAD adds `"windows"`.
    """
    length = options.max_seq_length or task_inputs.default_sequence_length(spec)
    if spec.head_type == registry.SPAN:
        if vocab_path is None:
            raise ValueError("SQuAD evaluation needs the model's vocab.txt (pass vocab_path)")
        return _evaluate_squad(model, tokenizer, spec, examples, options, length, vocab_path)
    predictions = predict_examples(model, tokenizer, spec, examples, length, options.batch_size)
    labels = np.asarray([example.label for example in examples])
    result = metrics_lib.compute_metrics(spec, predictions, labels)
    result["examples"] = len(examples)
    return result


def _evaluate_squad(model, tokenizer, spec, questions, options, length, vocab_path):
    from distil_tf.data import squad

    version = spec.name.split("/v")[1]
    examples, features = task_inputs.squad_features(
        spec, questions, vocab_path, length, getattr(tokenizer, "hf_lowercase", True), training=False,
        doc_stride=options.doc_stride, max_query_length=options.max_query_length,
    )
    dataset = task_inputs.span_batches(spec, features, options.batch_size)
    outputs = predict_outputs(model, dataset)
    predictions, _, null_score_diffs = squad_decoding.decode_predictions(
        examples, features, outputs["start_logits"], outputs["end_logits"],
        n_best_size=options.n_best_size,
        max_answer_length=options.max_answer_length,
        do_lower_case=getattr(tokenizer, "hf_lowercase", True),
        version_2_with_negative=version == "2.0",
        null_score_diff_threshold=options.null_score_diff_threshold,
    )
    result = metrics_lib.squad_metrics(
        squad.to_official_dataset(questions), predictions, version=version,
        # The official v2.0 script's threshold search takes any score that
        # grows with "no answer"; the null-minus-best difference is what
        # BERT's run_squad writes as null_odds for it.
        no_answer_probabilities=null_score_diffs if version == "2.0" else None,
    )
    result["examples"] = len(questions)
    result["windows"] = len(features)
    return result


def format_table(task, model, results):
    """A plain-text table of `{split: metrics}` (values x100, counts as is)."""
    rows = [f"task: {task}    model: {model}"]
    width = max([len(name) for split in results.values() for name in split] + [6])
    for split, values in results.items():
        rows.append(f"  {split} ({values.get('examples', '?')} examples)")
        for name, value in values.items():
            if name in ("examples", "windows") or name.endswith(("_total", "_threshold")) or name == "total":
                continue
            rows.append(f"    {name:<{width}}  {100.0 * value:7.2f}")
    return "\n".join(rows)
