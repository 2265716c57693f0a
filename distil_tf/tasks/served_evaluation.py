"""Score what is served: an exported SavedModel's `serving_default`, called on raw text.

`distil-tf evaluate --model EXPORT_BASE[/VERSION]` ends here. The model is
called exactly as a TF Serving client calls it (`text` [+ `text_pair`], or
`question` + `context`), so the in-graph tokenization, cleaning, truncation
and, for SQuAD, the windowing and span decoding of the export are what is
measured, with the same metrics as a model directory's evaluation:

- classification: `logits` `[B, classes]` -> argmax -> the task's metrics;
- regression: `score` `[B]` -> Pearson/Spearman;
- span: `answer` string `[B]` -> the official SQuAD EM/F1.
"""

import pathlib

import numpy as np
import tensorflow as tf

from distil_tf.tasks import metrics as metrics_lib
from distil_tf.tasks import registry


def is_saved_model(path):
    return (pathlib.Path(path) / "saved_model.pb").is_file()


def resolve_saved_model(path):
    """A SavedModel version directory, or a base path's newest version; None for anything else."""
    path = pathlib.Path(path)
    if is_saved_model(path):
        return path
    if path.is_dir():
        versions = sorted(
            (int(child.name), child) for child in path.iterdir()
            if child.name.isdigit() and is_saved_model(child)
        )
        if versions:
            return versions[-1][1]
    return None


def serving_signature(version_dir):
    """`serving_default` of a SavedModel, and its input names; one clear error when absent."""
    loaded = tf.saved_model.load(str(version_dir))
    if "serving_default" not in loaded.signatures:
        raise ValueError(
            f"{version_dir} has no serving_default signature (it has {sorted(loaded.signatures) or 'none'}); "
            "export it with distil-tf export"
        )
    signature = loaded.signatures["serving_default"]
    # Keep the loaded object alive as long as its signature is used.
    signature._loaded_object = loaded
    return signature, sorted(signature.structured_input_signature[1])


def _required_inputs(spec):
    if spec.head_type == registry.SPAN:
        return ["context", "question"]
    return ["text", "text_pair"] if spec.is_pair else ["text"]


def evaluate_saved_model(version_dir, spec, examples, batch_size=64):
    """Metrics of the SavedModel at `version_dir` on `examples` (from `task_inputs.read_split`).

    Returns:
        `{metric: value, "examples": n}` like `Task.evaluate`.

    Raises:
        ValueError: the signature does not take the task's inputs, or its
            outputs do not fit the task (another head, another label count).
    """
    signature, inputs = serving_signature(version_dir)
    required = _required_inputs(spec)
    if inputs != required:
        raise ValueError(
            f"{version_dir}: serving_default takes ({', '.join(inputs)}) but task '{spec.name}' "
            f"needs ({', '.join(required)})"
        )
    outputs = signature.structured_outputs
    if spec.head_type == registry.SPAN:
        return _evaluate_answers(signature, spec, examples, batch_size, version_dir, outputs)
    key = "score" if spec.head_type == registry.REGRESSION else "logits"
    if key not in outputs:
        raise ValueError(
            f"{version_dir}: serving_default has no '{key}' output (outputs: {', '.join(sorted(outputs))}); "
            f"task '{spec.name}' needs a {spec.head_type} head"
        )
    predictions = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        feed = {"text": tf.constant([example.text_a for example in batch])}
        if spec.is_pair:
            feed["text_pair"] = tf.constant([example.text_b for example in batch])
        predictions.append(signature(**feed)[key].numpy())
    predictions = np.concatenate(predictions, axis=0)
    if spec.head_type == registry.CLASSIFICATION:
        if predictions.shape[-1] != len(spec.label_names):
            raise ValueError(
                f"{version_dir} predicts {predictions.shape[-1]} classes but task '{spec.name}' has "
                f"{len(spec.label_names)}"
            )
        predictions = predictions.argmax(axis=-1)
    else:
        predictions = predictions.reshape(-1)
    labels = np.asarray([example.label for example in examples])
    result = metrics_lib.compute_metrics(spec, predictions, labels)
    result["examples"] = len(examples)
    return result


def _evaluate_answers(signature, spec, questions, batch_size, version_dir, outputs):
    from distil_tf.data import squad

    if "answer" not in outputs:
        raise ValueError(f"{version_dir}: serving_default has no 'answer' output; task '{spec.name}' needs a span head")
    predictions = {}
    for start in range(0, len(questions), batch_size):
        batch = questions[start:start + batch_size]
        answers = signature(question=tf.constant([q.question_text for q in batch]),
                            context=tf.constant([q.context for q in batch]))["answer"].numpy()
        predictions.update({q.qas_id: answer.decode("utf-8") for q, answer in zip(batch, answers)})
    version = spec.name.split("/v")[1]
    result = metrics_lib.squad_metrics(squad.to_official_dataset(questions), predictions, version=version)
    result["examples"] = len(questions)
    return result
