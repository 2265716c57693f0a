"""Human-readable facts about a model: architecture, sizes, where it came from."""

from distil_tf.models.model_dir import describe_model, load_model
from distil_tf.run_dir import read_run, resolve_model_path


def parameter_counts(encoder):
    """Parameters by part: embeddings, transformer layers, pooler, MLM head, total."""
    def count(weights):
        return int(sum(int(w.shape.num_elements() if hasattr(w.shape, "num_elements") else _size(w.shape)) for w in weights))

    backbone = encoder.backbone
    embeddings = count(encoder.token_embedding.weights) + count(encoder.position_embedding.weights)
    embeddings += count(encoder.embeddings_layer_norm.weights)
    if encoder.architecture == "bert":
        embeddings += count(backbone.segment_embedding.weights)
    layers = sum(count(layer.weights) for layer in encoder.transformer_layers)
    pooler = count(backbone.pooled_dense.weights) if encoder.architecture == "bert" else 0
    head = 0
    if encoder.mlm_head is not None:
        head = count(encoder.mlm_head._intermediate_dense.weights)
        head += count(encoder.mlm_head._intermediate_layer_norm.weights) + encoder.vocabulary_size
    return {
        "embeddings": embeddings,
        "transformer_layers": layers,
        "pooler": pooler,
        "backbone": embeddings + layers + pooler,
        "mlm_head": head,
        "total": encoder.count_params(),
    }


def _size(shape):
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def summarize(path):
    """A multi-line description of the model at `path`."""
    resolved = resolve_model_path(path)
    model = load_model(resolved)
    encoder = getattr(model, "encoder", model)
    counts = parameter_counts(encoder)
    provenance = describe_model(resolved)
    lines = [f"model:          {path}"]
    if str(resolved) != str(path):
        run = read_run(path)
        lines = [f"model:          {resolved} (final model of the {run.get('command', '')} run {path}, "
                 f"{run.get('status', 'unknown')})"]
    lines += [
        f"architecture:   {encoder.architecture} ({'DistilBERT student' if encoder.architecture == 'distilbert' else 'BERT'})",
        f"layers:         {encoder.num_layers}",
        f"hidden size:    {encoder.hidden_dim}  heads: {encoder.num_heads}  "
        f"feed-forward: {encoder.intermediate_dim}",
        f"vocabulary:     {encoder.vocabulary_size}  max positions: {encoder.max_sequence_length}",
        f"activation:     {encoder.hidden_activation}",
        f"MLM head:       {'yes' if encoder.mlm_head is not None else 'no'}",
        f"parameters:     {counts['total']:,} total; backbone {counts['backbone']:,} "
        f"(embeddings {counts['embeddings']:,}, layers {counts['transformer_layers']:,}, "
        f"pooler {counts['pooler']:,}); MLM head {counts['mlm_head']:,}",
    ]
    if model is not encoder:
        lines.append(f"task:           {getattr(model, 'task_name', type(model).__name__)}")
    if provenance.get("layer_map") is not None:
        lines.append(
            f"layer map:      student layers 0..{len(provenance['layer_map']) - 1} <- teacher "
            f"layers {provenance['layer_map']} of {provenance.get('teacher_layers')}"
        )
    if provenance.get("teacher"):
        lines.append(f"teacher:        {provenance['teacher']}")
    if provenance.get("initialization"):
        initialization = provenance["initialization"]
        if initialization == "random":
            initialization = "random init"
            if provenance.get("teacher_hidden_size") not in (None, provenance.get("hidden_size")):
                # `init-student --hidden-size`: teacher layers do not fit another width.
                initialization += (f" (hidden size {provenance.get('hidden_size')} vs the teacher's "
                                   f"{provenance['teacher_hidden_size']}: teacher layers cannot be copied)")
        lines.append(f"initialization: {initialization}"
                     + (" (token-type row 0 folded into positions)" if provenance.get("token_type_folded") else ""))
    shown = ("layer_map", "teacher", "initialization", "token_type_folded", "teacher_layers", "teacher_architecture",
             "kind", "hidden_size", "teacher_hidden_size")
    for key, value in provenance.items():
        if key not in shown:
            lines.append(f"{key + ':':<16}{value}")
    return "\n".join(lines)
