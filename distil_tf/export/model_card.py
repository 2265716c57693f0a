"""Model cards: the `README.md` inside every exported directory (the Hugging Face Hub convention).

Everything on the card comes from the model directory itself: its
architecture config, `config.json -> distil_tf.provenance` (teacher, layer
map, recipe, data, steps), and, when the model is the final model of a run,
the run's `metrics.json` (dev metrics) and `run.json` (the command). A field
the directory does not record is written as "not recorded", never guessed.
"""

import json
import pathlib

CARD_FILE = "README.md"
NOT_RECORDED = "not recorded"

_KIND_DESCRIPTIONS = {
    "student": "a DistilBERT student initialized from a teacher's layers (not trained yet)",
    "distilled_student": "a DistilBERT student distilled from a teacher on masked-language-model data",
    "finetuned": "a model fine-tuned on a downstream task",
    "task_distilled": "a student distilled from a fine-tuned teacher on a downstream task",
}
_LOSS_NAMES = {
    "alpha_ce": "soft-target cross-entropy (KL at temperature T, scaled by T^2)",
    "alpha_mlm": "masked-LM cross-entropy on the true tokens",
    "alpha_cos": "cosine embedding loss on the last hidden states",
    "alpha_mse": "mean squared error between student and teacher logits",
    "alpha_task": "task loss on the true labels",
}


def _run_directory(source):
    """The run directory whose final model is `source`, else None."""
    from distil_tf.run_dir import is_run_directory, read_run

    source = pathlib.Path(source).absolute()
    for candidate in (source, source.parent):
        if is_run_directory(candidate):
            try:
                record = read_run(candidate)
            except ValueError:
                return None
            final = record.get("final_model")
            if final is not None and (candidate / final).absolute() == source:
                return candidate
    return None


def _read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _architecture_lines(encoder):
    lines = [
        f"- architecture: {encoder.architecture}, {encoder.num_layers} layers, hidden {encoder.hidden_dim}, "
        f"{encoder.num_heads} heads, feed-forward {encoder.intermediate_dim}, "
        f"vocabulary {encoder.vocabulary_size}, {encoder.max_sequence_length} positions",
        f"- activation: {encoder.hidden_activation}; dropout {encoder.dropout}",
        f"- pooling: {encoder.pooling or 'none recorded'}"
        + ("; embeddings L2-normalized" if encoder.normalize_embeddings else ""),
        f"- masked-LM head: {'yes' if encoder.mlm_head is not None else 'no'}",
    ]
    return lines


def _head_lines(model):
    if not hasattr(model, "head_type"):
        return ["- head: none (an encoder)"]
    lines = [f"- head: {model.head_type}, task {model.task_name or NOT_RECORDED}"]
    if model.head_type == "classification":
        lines.append(f"- labels (id order): {', '.join(model.label_names or []) or NOT_RECORDED}")
    if model.head_type != "span":
        lines.append(f"- head pooling: {model.pooling}")
    return lines


def _recipe_lines(provenance):
    lines = []
    teacher = provenance.get("teacher")
    lines.append(f"- teacher: {teacher or NOT_RECORDED}")
    if "teacher_architecture" in provenance or "teacher_layers" in provenance:
        lines.append(f"- teacher architecture: {provenance.get('teacher_architecture', NOT_RECORDED)}, "
                     f"{provenance.get('teacher_layers', NOT_RECORDED)} layers")
    if "layer_map" in provenance:
        layer_map = provenance["layer_map"]
        lines.append("- layer map (student layer i <- teacher layer): "
                     + (", ".join(f"{i}<-{t}" for i, t in enumerate(layer_map)) if layer_map else "none (random init)"))
    if "initialization" in provenance:
        lines.append(f"- initialization: {provenance['initialization']}")
    if provenance.get("student_init"):
        lines.append(f"- student initialized from: {provenance['student_init']}")
    if provenance.get("base_model"):
        lines.append(f"- base model: {provenance['base_model']}")
    if provenance.get("token_type_folded"):
        lines.append("- the teacher's token-type embedding row 0 is folded into the position embeddings "
                     "(single-segment inputs embed exactly as in the teacher)")
    distillation = provenance.get("distillation")
    if isinstance(distillation, dict):
        if "temperature" in distillation:
            lines.append(f"- temperature: {distillation['temperature']}")
        losses = [f"{value} x {_LOSS_NAMES.get(key, key)}" for key, value in distillation.items()
                  if key.startswith("alpha") and value]
        lines.append("- losses: " + ("; ".join(losses) if losses else NOT_RECORDED))
        others = {key: value for key, value in distillation.items()
                  if not key.startswith("alpha") and key != "temperature"}
        if others:
            lines.append(f"- other distillation settings: `{json.dumps(others, sort_keys=True)}`")
    elif provenance.get("kind") in ("distilled_student", "task_distilled"):
        lines.append(f"- losses: {NOT_RECORDED}")
    return lines


def _training_lines(provenance):
    data = provenance.get("data")
    lines = [f"- data: {json.dumps(data, sort_keys=True) if data else NOT_RECORDED}",
             f"- steps: {provenance.get('steps', NOT_RECORDED)}"]
    for key in ("epochs", "max_seq_length", "seed"):
        if provenance.get(key) is not None:
            lines.append(f"- {key.replace('_', ' ')}: {provenance[key]}")
    if provenance.get("preprocessing"):
        # Served-equals-trained: a user of the export must pack text the same way.
        lines.append("- preprocessing used in training (apply the same before tokenizing): "
                     f"`{json.dumps(provenance['preprocessing'], sort_keys=True)}`")
    if provenance.get("optimizer"):
        lines.append(f"- optimizer: `{json.dumps(provenance['optimizer'], sort_keys=True)}`")
    return lines


def _metrics_lines(run_directory):
    if run_directory is None:
        return [f"Dev metrics: {NOT_RECORDED} (the model is not the final model of a distil-tf run)."]
    metrics = _read_json(run_directory / "metrics.json")
    run = (_read_json(run_directory / "run.json") or {}).get("distil_tf_run", {})
    command = run.get("command")
    config_path = run_directory / "config.yaml"
    if command:
        invocation = f"distil-tf {command}" + (f" --config {config_path.name}" if config_path.is_file() else "")
    else:
        invocation = NOT_RECORDED
    lines = [f"Produced by `{invocation}` in run directory `{run_directory.name}` "
             "(its resolved config is `config.yaml` there)."]
    if metrics is None:
        lines.append(f"Dev metrics: {NOT_RECORDED} (no metrics.json; the run may not have finished).")
        return lines
    evaluation = metrics.get("evaluation") or {
        key: metrics[key] for key in ("validation_before", "validation_after") if key in metrics
    }
    lines.append("")
    lines.append("```json")
    lines.append(json.dumps(evaluation, indent=2, sort_keys=True) if evaluation else "{}")
    lines.append("```")
    return lines


def render_model_card(model, provenance, source, format_name, details):
    """The model card's Markdown.

    Args:
        model: the exported `Encoder` or `TaskModel`.
        provenance: dict from `config.json -> distil_tf.provenance` (may be empty).
        source: path of the exported model directory.
        format_name: "hf", "keras-hub" or "tflite".
        details: the format writer's dict: `summary`, optional `notes` (list of
            str) and `usage` (code).
    """
    encoder = getattr(model, "encoder", model)
    provenance = provenance or {}
    kind = provenance.get("kind")
    library = {"hf": "transformers", "keras-hub": "keras-hub", "tflite": "tflite"}[format_name]
    lines = [
        "---",
        f"library_name: {library}",
        "tags:",
        "- distil-tf",
        f"- {encoder.architecture}",
        "---",
        "",
        f"# {pathlib.Path(source).name}",
        "",
        f"{details['summary']}, exported by distil-tf from `{source}`: "
        f"{_KIND_DESCRIPTIONS.get(kind, 'a model with no recorded provenance (an external checkpoint)')}.",
        "",
        "## Teacher, layer map and recipe",
        "",
        *_recipe_lines(provenance),
        "",
        "## Training data and steps",
        "",
        *_training_lines(provenance),
        "",
        "## Dev metrics",
        "",
        *_metrics_lines(_run_directory(source)),
        "",
        "## Config",
        "",
        *_architecture_lines(encoder),
        *_head_lines(model),
        "",
        "## Intended use and limits",
        "",
        "- Intended for research and for the task it was trained on; a distilled student trades some "
        "accuracy for speed (DistilBERT, arXiv 1910.01108), so check the dev metrics above for your use.",
        "- English WordPiece text up to "
        f"{encoder.max_sequence_length} tokens; longer inputs must be truncated or windowed.",
        "- It inherits the biases of its teacher and of the training data.",
        *[f"- {note}" for note in details.get("notes", [])],
    ]
    if details.get("usage"):
        lines += ["", "## Usage", "", "```python", details["usage"], "```"]
    return "\n".join(lines) + "\n"
