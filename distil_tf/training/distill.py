"""General-purpose distillation: a BERT teacher into a DistilBERT student on raw text.

    distil-tf distill --teacher bert-base-uncased/ --student 0,2,4,7,9,11 \
        --corpus 'wiki/*.txt' --out runs/distilbert [--config paper.yaml]

A teacher without an MLM head (a sentence-transformers model such as
all-MiniLM-L6-v2) teaches through its hidden states alone: with the default
weights (`None` = "by the teacher") the ce and mlm terms are off and L_cos, the
per-layer hidden-state MSE and the pooled-embedding cosine are on; the run
prints, once, which terms are active and why (`resolve_loss_weights`). An
MLM-based term asked for explicitly on such a teacher is an error. With no MLM
term on, the student sees unmasked text (`distillation.mask_inputs`).

A student narrower than the teacher (`distil-tf init-student --hidden-size`)
gets its hidden-state terms through a learned projection to the teacher's
width (`distillation.hidden_projection`, TinyBERT's W_h): trained and
checkpointed with the run, left out of the saved student.

Attention terms, each off by default and each its own ablation switch:
`distillation.alpha_attention_mse` (TinyBERT's MSE of the unnormalized
attention scores, over the hidden-state MSE's layer pairs),
`distillation.alpha_attention_kl` and `distillation.alpha_value_relation`
(MiniLM's last-layer attention and value-relation KL). They need the
teacher's head count (head sizes may differ); otherwise the run stops before
training, in one line.

Output directory: `config.yaml` (resolved config), `token_counts.npy`,
`checkpoints/` (resume state, the projection included), `tensorboard/`,
`student/` (the distilled student alone, loadable by `distil_tf.load_model`),
`metrics.json`.
"""

import dataclasses
import pathlib
import typing

import numpy as np

from distil_tf.distillation.distillation_losses import mapped_layer_pairs
from distil_tf.training import train_lib
from distil_tf.training.optimization import OptimizerConfig, build_optimizer
from distil_tf.training.runtime import RuntimeConfig, is_chief


@dataclasses.dataclass
class CorpusConfig:
    # Text files (globs, .gz), TFRecords, or tfds names ("tfds:wikipedia/20230601.en").
    corpus: typing.List[str] = dataclasses.field(default_factory=list)
    # Held-out text for the validation MLM loss (optional).
    validation_corpus: typing.List[str] = dataclasses.field(default_factory=list)
    # Token counts from `distil-tf count-tokens`; counted into the run dir if unset.
    token_counts: typing.Optional[str] = None
    max_seq_length: int = 128
    # Shortest kept sequence, [CLS]/[SEP] included (the original drops lines
    # under 12 ids for masked-LM; sentence corpora for embedding students
    # want their short sentences: STS-B captions are often 8-11 ids).
    min_seq_length: int = 12
    # Global batch size (sequences per step, across replicas).
    batch_size: int = 32
    # Fixed [batch, max_seq_length] shapes and static predictions (TPU / XLA).
    fixed_shapes: bool = False
    shuffle_buffer: int = 10000


@dataclasses.dataclass
class DistillationConfig:
    # The released model's weights (transformers#2013): 5 / 2 / 1, T = 2.
    # None = by the teacher: 5.0 / 2.0 with an MLM head, off without one
    # (explicit values > 0 on a teacher without a head are an error).
    alpha_ce: typing.Optional[float] = None
    alpha_mlm: typing.Optional[float] = None
    alpha_cos: float = 1.0
    alpha_mse: float = 0.0
    temperature: float = 2.0
    restrict_ce_to_mask: bool = False
    # "last" (the paper) or "all": cosine also on every student layer and the
    # teacher layer it was copied from.
    cosine_layers: str = "last"
    # Per-layer hidden-state MSE (TinyBERT's eq. 8, no projection). None = by
    # the teacher: off with an MLM head (the paper's triple loss), 1.0 without.
    alpha_hidden_mse: typing.Optional[float] = None
    # "all": every student layer against the teacher layer it was copied from
    # ("last" when the student was given as a directory); "last": last layers.
    hidden_mse_layers: str = "all"
    # Cosine / MSE of the sentence embeddings, both pooled the teacher's way
    # (mean over real tokens for sentence-transformers checkpoints). None = by
    # the teacher: 1.0 without an MLM head when it pools by mean or cls, else off.
    alpha_pooled_cos: typing.Optional[float] = None
    alpha_pooled_mse: float = 0.0
    # In-batch cosine-similarity matrix of the pooled embeddings, student vs
    # teacher (relational distillation): what STS and search score.
    alpha_pooled_relation: float = 0.0
    # A learned linear map (TinyBERT's W_h, one Dense shared by every layer)
    # from the student's hidden size to the teacher's, applied to the student's
    # states before cos, hidden_mse, pooled_cos and pooled_mse. "auto": only
    # when the widths differ (a narrower student); "always": also at equal
    # widths (starts as the identity); "never": the widths must match. It is
    # checkpointed with the run but not part of the saved student.
    hidden_projection: str = "auto"
    # Attention terms, each off at 0 and each needing the teacher's head count
    # (head sizes may differ). TinyBERT's MSE of the unnormalized attention
    # scores (eq. 7), over the same layer pairs as hidden_mse_layers:
    alpha_attention_mse: float = 0.0
    # MiniLM's KL(teacher || student) of the last layer's attention
    # probabilities, per head, over real query and key tokens:
    alpha_attention_kl: float = 0.0
    # MiniLM's KL of the last layer's value relations softmax(V V^T / sqrt(d_head)):
    alpha_value_relation: float = 0.0
    # "auto": mask the student's input only when an MLM term (ce, mlm, mse) is
    # on; the hidden-state targets are the teacher's states on the same input,
    # so without an MLM term both see the real text, as served. "always":
    # mask anyway (both then see masked text, the paper's L_cos setting).
    mask_inputs: str = "auto"
    mask_proportion: float = 0.15
    mlm_smoothing: float = 0.7
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1
    # The original's masking budget, ceil(0.15 x non-pad tokens) with [CLS]/[SEP]
    # counted (~15.5% of the maskable ones); default: 15% of the maskable tokens.
    budget_counts_special_tokens: bool = False
    # Keep the student's position embeddings (copied from the teacher) frozen,
    # as the released model's were (see distilbert_base_paper.yaml).
    freeze_position_embeddings: bool = False


@dataclasses.dataclass
class DistillConfig:
    teacher: str = ""
    # A student directory, a layer map ("0,2,4,7,9,11"), or a depth ("6").
    student: str = "6"
    out: str = ""
    # Random student weights (Table 4's ablation) instead of teacher layers.
    random_init: bool = False
    steps: int = 1000
    checkpoint_every: int = 500
    log_every: int = 50
    data: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    distillation: DistillationConfig = dataclasses.field(default_factory=DistillationConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


def parse_student(spec):
    """("dir", path) | ("layers", [..]) | ("depth", n)."""
    path = pathlib.Path(spec)
    if path.exists():
        return "dir", path
    try:
        values = [int(item) for item in spec.split(",") if item.strip()]
    except ValueError:
        raise ValueError(
            f"--student '{spec}' is neither an existing directory nor a layer map like 0,2,4,7,9,11"
        ) from None
    if len(values) == 1 and "," not in spec:
        return "depth", values[0]
    return "layers", values


def load_student_dir(path, teacher_tokenizer):
    """The model saved in a student directory, checked to share the teacher's vocabulary."""
    from distil_tf.models import load_model_and_tokenizer

    student, student_tokenizer = load_model_and_tokenizer(path)
    if student_tokenizer.get_vocabulary() != teacher_tokenizer.get_vocabulary():
        raise ValueError(
            f"the student's vocabulary ({student_tokenizer.vocabulary_size()} tokens) differs "
            f"from the teacher's ({teacher_tokenizer.vocabulary_size()}): distillation needs one vocabulary"
        )
    return student


def build_models(config):
    """Teacher, student (initialized per the config) and the tokenizer."""
    from distil_tf.models import init_student_from_teacher, load_model_and_tokenizer
    from distil_tf.models.student_init import validate_layer_map

    teacher, tokenizer = load_model_and_tokenizer(config.teacher)
    teacher = getattr(teacher, "encoder", teacher)
    kind, value = parse_student(config.student)
    if kind == "dir":
        student, layer_map = load_student_dir(value, tokenizer), None
    else:
        layers = value if kind == "layers" else None
        depth = value if kind == "depth" else None
        if layers is not None:
            validate_layer_map(layers, teacher.num_layers)
        student, layer_map = init_student_from_teacher(
            teacher, layer_map=layers, num_layers=depth, random_init=config.random_init
        )
    return teacher, student, tokenizer, layer_map


def _cosine_pairs(config, student, layer_map):
    if config.distillation.cosine_layers == "last":
        return [(-1, -1)]
    if config.distillation.cosine_layers == "all":
        if layer_map is None:
            raise ValueError("cosine_layers=all needs a layer map (the student was given as a directory)")
        return mapped_layer_pairs(layer_map)
    raise ValueError(f"cosine_layers must be 'last' or 'all', got '{config.distillation.cosine_layers}'")


MLM_TERMS = ("ce", "mlm", "mse")
POOLED_TERMS = ("pooled_cos", "pooled_mse", "pooled_relation")
ATTENTION_TERMS = ("attention_mse", "attention_kl", "value_relation")
_DEFAULT_MLM_WEIGHTS = {"ce": 5.0, "mlm": 2.0}


def resolve_loss_weights(distillation, teacher_has_mlm_head, teacher_pooling, teacher_name="the teacher"):
    """The weight of every term for this teacher, and why, before any training.

    Args:
        distillation: `DistillationConfig` (its `None` weights mean "by the teacher").
        teacher_has_mlm_head: bool.
        teacher_pooling: the teacher's recorded pooling (None, "cls_pooler", "cls", "mean").
        teacher_name: str, for the error message.

    Returns:
        `(weights, reason)`: `{"ce", "mlm", "mse", "cos", "hidden_mse",
        "pooled_cos", "pooled_mse", "pooled_relation"}` floats, plus
        `"attention_mse"`, `"attention_kl"`, `"value_relation"` when set
        (not 0), and a short why.

    Raises:
        ValueError: an MLM-based term (ce, mlm, mse) explicitly > 0 on a
            teacher without an MLM head (one line naming both ways out).
    """
    config = distillation
    pooled_possible = teacher_pooling in ("mean", "cls")
    if not teacher_has_mlm_head:
        asked = [(name, getattr(config, f"alpha_{name}")) for name in MLM_TERMS]
        asked = [(name, value) for name, value in asked if value is not None and value > 0]
        if asked:
            settings = " and ".join(f"distillation.alpha_{name}={value:g}" for name, value in asked)
            zeros = " ".join(f"--set distillation.alpha_{name}=0" for name, _ in asked)
            raise ValueError(
                f"{settings} needs the teacher's masked-LM head, and {teacher_name} has none: "
                f"drop the term ({zeros}; the hidden-state terms still apply) or use a teacher "
                "with an MLM head (a BertForMaskedLM checkpoint, or fit one: distil-tf fit-mlm-head "
                f"--teacher {teacher_name} --corpus C --out T_MLM)"
            )
        reasons = ["teacher has no MLM head: ce and mlm off"]
        pooled_cos = config.alpha_pooled_cos
        if pooled_cos is None:
            pooled_cos = 1.0 if pooled_possible else 0.0
            if not pooled_possible:
                reasons.append(f"pooled_cos off (the teacher records pooling {teacher_pooling!r}, not mean or cls)")
        weights = {
            "ce": 0.0, "mlm": 0.0, "mse": 0.0,
            "hidden_mse": 1.0 if config.alpha_hidden_mse is None else config.alpha_hidden_mse,
            "pooled_cos": pooled_cos,
        }
    else:
        reasons = ["teacher has an MLM head"]
        weights = {
            "ce": _DEFAULT_MLM_WEIGHTS["ce"] if config.alpha_ce is None else config.alpha_ce,
            "mlm": _DEFAULT_MLM_WEIGHTS["mlm"] if config.alpha_mlm is None else config.alpha_mlm,
            "mse": config.alpha_mse,
            "hidden_mse": config.alpha_hidden_mse or 0.0,
            "pooled_cos": config.alpha_pooled_cos or 0.0,
        }
    weights["cos"] = config.alpha_cos
    weights["pooled_mse"] = config.alpha_pooled_mse
    weights["pooled_relation"] = config.alpha_pooled_relation
    # Only when set: a run without them reports the same weights as before.
    for name in ATTENTION_TERMS:
        value = getattr(config, f"alpha_{name}")
        if value:
            weights[name] = value
    return weights, "; ".join(reasons)


def check_attention_heads(weights, teacher_heads, student_heads):
    """Raise before training when an attention term is on and the head counts differ (one line)."""
    from distil_tf.distillation.attention_terms import check_head_counts

    for name in ATTENTION_TERMS:
        if weights.get(name, 0.0) > 0:
            check_head_counts(f"alpha_{name}", teacher_heads, student_heads,
                              switch_off=f"--set distillation.alpha_{name}=0")


def inputs_are_masked(distillation, weights):
    """Whether the student (and teacher) see masked text: an MLM term is on, or `mask_inputs=always`."""
    if distillation.mask_inputs not in ("auto", "always"):
        raise ValueError(f"distillation.mask_inputs must be 'auto' or 'always', got '{distillation.mask_inputs}'")
    return distillation.mask_inputs == "always" or any(weights[name] > 0 for name in MLM_TERMS)


HIDDEN_TERMS = ("cos", "hidden_mse", "pooled_cos", "pooled_mse")


def resolve_hidden_projection(distillation, weights, teacher_hidden, student_hidden):
    """Whether the run learns a projection of the student's hidden states, checked before training.

    Args:
        distillation: `DistillationConfig` (its `hidden_projection`).
        weights: the resolved loss weights (`resolve_loss_weights`).
        teacher_hidden, student_hidden: int hidden sizes.

    Returns:
        bool: a projection is used (a hidden-state term is on, and the
        widths differ under "auto", or "always").

    Raises:
        ValueError: an unknown mode, or differing widths with a hidden-state
            term on and `hidden_projection=never` (one line naming the ways out).
    """
    mode = distillation.hidden_projection
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"distillation.hidden_projection must be 'auto', 'always' or 'never', got '{mode}'")
    active = [name for name in HIDDEN_TERMS if weights[name] > 0]
    if not active:
        return False
    if teacher_hidden != student_hidden and mode == "never":
        terms = " and ".join(f"distillation.alpha_{name}={float(weights[name]):g}" for name in active)
        zeros = " ".join(f"--set distillation.alpha_{name}=0" for name in active)
        raise ValueError(
            f"{terms} compares hidden states, but the teacher's hidden size ({teacher_hidden}) differs from "
            f"the student's ({student_hidden}) and distillation.hidden_projection=never: "
            f"--set distillation.hidden_projection=auto (a learned projection) or drop the term ({zeros})"
        )
    return mode == "always" or teacher_hidden != student_hidden


def describe_projection(teacher_hidden, student_hidden):
    """The announcement of a used projection (`describe_loss_terms`'s `projection`)."""
    if teacher_hidden == student_hidden:
        return (f"learned {student_hidden}->{teacher_hidden} (hidden_projection=always; widths equal: "
                "harmless, it starts as the identity)")
    relation = "narrower" if student_hidden < teacher_hidden else "wider"
    return f"learned {student_hidden}->{teacher_hidden} (the student is {relation}: TinyBERT's W_h)"


def describe_loss_terms(weights, reason, masked, cosine_layers, hidden_mse_layers, pooling, projection=None):
    """One line: why, which terms are on with their weights, the input, and the projection if any.

    The attention-score MSE follows `hidden_mse_layers`' layer pairs; the
    attention and value-relation KL read the last layers.

    `projection`: `describe_projection`'s text when the student's hidden
    states are projected, else None (nothing added).
    """
    labels = {
        "ce": "ce", "mlm": "mlm", "mse": "mse", "cos": f"cos({cosine_layers})",
        "hidden_mse": f"hidden_mse({hidden_mse_layers})",
        "pooled_cos": f"pooled_cos({pooling})", "pooled_mse": f"pooled_mse({pooling})",
        "pooled_relation": f"pooled_relation({pooling})",
        "attention_mse": f"attention_mse({hidden_mse_layers})", "attention_kl": "attention_kl(last)",
        "value_relation": "value_relation(last)",
    }
    active = [f"{label} {float(weights[name])}" for name, label in labels.items() if weights.get(name, 0.0) > 0]
    text = "masked (an MLM term is on)" if masked and any(weights[n] > 0 for n in MLM_TERMS) else (
        "masked (mask_inputs=always)" if masked else "unmasked text (no MLM term)")
    line = f"{reason}; active: {', '.join(active) or 'none'}; input: {text}"
    if projection:
        line += f"; hidden projection: {projection}"
    return line


def _token_counts(config, tokenizer, out_dir):
    from distil_tf.data.token_counts import count_tokens, load_token_counts

    if config.data.token_counts:
        return load_token_counts(config.data.token_counts, tokenizer.vocabulary_size())
    path = out_dir / "token_counts.npy"
    if path.is_file():
        return load_token_counts(path, tokenizer.vocabulary_size())
    print(f"counting tokens of the corpus into {path} (pass --set data.token_counts=... to reuse)")
    # The same sequences as training's (same length filter), so the masking
    # smoothing counts what the student will see.
    return count_tokens(config.data.corpus, tokenizer, config.data.max_seq_length, path,
                        vocabulary_size=tokenizer.vocabulary_size(), min_length=config.data.min_seq_length)


def _unmask(batch):
    """The batch with every masked position restored: the real text, no MLM labels."""
    import tensorflow as tf

    batch = dict(batch)
    batch["token_ids"] = tf.where(batch["mlm_mask"], batch["mlm_labels"], batch["token_ids"])
    batch["mlm_labels"] = tf.fill(tf.shape(batch["mlm_labels"]), tf.constant(-100, batch["mlm_labels"].dtype))
    batch["mlm_mask"] = tf.zeros_like(batch["mlm_mask"])
    if "mask_weights" in batch:
        batch["mask_weights"] = tf.zeros_like(batch["mask_weights"])
    return batch


def mlm_dataset_factory(config, tokenizer, counts, corpus, seed_offset=0, masked=True):
    from distil_tf.data.batching import build_mlm_dataset

    def make(input_context, batch_size):
        dataset = build_mlm_dataset(
            corpus, tokenizer, counts,
            max_length=config.data.max_seq_length,
            batch_size=batch_size,
            fixed_shapes=config.data.fixed_shapes,
            seed=config.runtime.seed + seed_offset,
            input_context=input_context,
            shuffle_buffer=config.data.shuffle_buffer,
            min_length=config.data.min_seq_length,
            mask_proportion=config.distillation.mask_proportion,
            mlm_smoothing=config.distillation.mlm_smoothing,
            mask_token_rate=config.distillation.mask_token_rate,
            random_token_rate=config.distillation.random_token_rate,
            budget_counts_special_tokens=config.distillation.budget_counts_special_tokens,
        )
        if not masked:
            # The batching (length buckets, shapes) stays the masked one's;
            # only the masking is undone, cheaply, per batch.
            import tensorflow as tf

            dataset = dataset.map(_unmask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset

    return make


def evaluate_mlm(distiller, make_dataset, max_batches=50):
    """Mean held-out loss terms of the student (no weight update)."""
    dataset = make_dataset(None, 32).take(max_batches)
    totals, batches = {}, 0
    for batch in dataset:
        outputs = distiller.student(batch, training=False)
        terms = distiller.loss_terms(batch, outputs)
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value)
        batches += 1
    return {name: value / max(batches, 1) for name, value in totals.items()}


def check_corpus_run(config):
    """The fields a corpus run (`distill`, `fit-mlm-head`) cannot start without, each named by its flag."""
    if not config.teacher:
        raise ValueError("no teacher: pass --teacher")
    if not config.out:
        raise ValueError("no output directory: pass --out")
    if not config.data.corpus:
        raise ValueError("no corpus: pass --corpus")


def run_distillation(config, callbacks=()):
    """Run a general-purpose distillation; returns a summary dict.

    Args:
        config: `DistillConfig`.
        callbacks: extra Keras callbacks (progress hooks, tests).
    """
    check_corpus_run(config)
    train_lib.use_fixed_shapes_on_tpu(config)
    out_dir = pathlib.Path(config.out)
    train_lib.start_run(config, out_dir, "distill")
    with train_lib.training_runtime(config.runtime) as strategy:
        return _run(config, strategy, out_dir, callbacks)


def _initialization(config):
    """How the student started: a student directory's own record, else random or teacher layers."""
    kind, value = parse_student(config.student)
    if kind == "dir":
        from distil_tf.models import describe_model

        # A narrower student from `init-student --hidden-size` says "random".
        return describe_model(value).get("initialization", "student_directory")
    return "random" if config.random_init else "teacher_layers"


def _run(config, strategy, out_dir, callbacks):
    from distil_tf.distillation import MaskedLMDistiller

    with strategy.scope():
        teacher, student, tokenizer, layer_map = build_models(config)
        if config.distillation.freeze_position_embeddings:
            # Before compile: the optimizer (and its checkpointed slots) never sees them.
            student.position_embedding.trainable = False
        weights, reason = resolve_loss_weights(
            config.distillation, teacher.mlm_head is not None, teacher.pooling, config.teacher
        )
        masked = inputs_are_masked(config.distillation, weights)
        hidden_mse_layers = config.distillation.hidden_mse_layers
        if hidden_mse_layers not in ("all", "last"):
            raise ValueError(f"hidden_mse_layers must be 'all' or 'last', got '{hidden_mse_layers}'")
        if hidden_mse_layers == "all" and layer_map is None:
            hidden_mse_layers = "last"  # a student directory: no layer map to follow
        pooling = teacher.pooling if any(weights[name] > 0 for name in POOLED_TERMS) else None
        projected = resolve_hidden_projection(config.distillation, weights, teacher.hidden_dim, student.hidden_dim)
        check_attention_heads(weights, teacher.num_heads, student.num_heads)
        if is_chief():
            print(describe_loss_terms(weights, reason, masked, config.distillation.cosine_layers,
                                      hidden_mse_layers, pooling,
                                      describe_projection(teacher.hidden_dim, student.hidden_dim) if projected
                                      else None))
        hidden_mse_pairs = mapped_layer_pairs(layer_map) if hidden_mse_layers == "all" else [(-1, -1)]
        distiller = MaskedLMDistiller(
            teacher, student,
            alpha_ce=weights["ce"],
            alpha_mlm=weights["mlm"],
            alpha_cos=weights["cos"],
            alpha_mse=weights["mse"],
            temperature=config.distillation.temperature,
            restrict_ce_to_mask=config.distillation.restrict_ce_to_mask,
            cosine_layer_pairs=_cosine_pairs(config, student, layer_map),
            alpha_hidden_mse=weights["hidden_mse"],
            hidden_mse_layer_pairs=hidden_mse_pairs,
            alpha_pooled_cos=weights["pooled_cos"],
            alpha_pooled_mse=weights["pooled_mse"],
            alpha_pooled_relation=weights["pooled_relation"],
            pooling=pooling,
            # Resolved above ("auto" at equal widths is "never"): the distiller
            # then builds a projection exactly when the announcement says so.
            hidden_projection="always" if projected else "never",
            alpha_attention_mse=weights.get("attention_mse", 0.0),
            attention_mse_layer_pairs=hidden_mse_pairs,
            alpha_attention_kl=weights.get("attention_kl", 0.0),
            alpha_value_relation=weights.get("value_relation", 0.0),
        )
        distiller.compile(
            optimizer=build_optimizer(config.optimizer, config.steps),
            jit_compile=config.runtime.jit_compile,
        )
    if masked:
        counts = _token_counts(config, tokenizer, out_dir)
    else:
        # Unmasked input: the masking (undone per batch) needs no real counts,
        # so no pass over the corpus to count them.
        counts = np.ones(tokenizer.vocabulary_size(), np.int64)
    make_train = mlm_dataset_factory(config, tokenizer, counts, config.data.corpus, masked=masked)
    make_validation = None
    if config.data.validation_corpus:
        make_validation = mlm_dataset_factory(config, tokenizer, counts, config.data.validation_corpus, 1,
                                              masked=masked)
    before = evaluate_mlm(distiller, make_validation) if make_validation else None

    result, seconds = train_lib.timed_fit(distiller, make_train, out_dir, config.steps, strategy, config, callbacks)
    after = evaluate_mlm(distiller, make_validation) if make_validation else None

    summary = {
        **train_lib.fit_summary(config.steps, result, seconds),
        "validation_before": before,
        "validation_after": after,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "precision": config.runtime.precision,
        "jit_compile": config.runtime.jit_compile,
        "loss_weights": weights,
        "loss_weights_reason": reason,
        "masked_inputs": masked,
        "hidden_projection": projected,
    }
    provenance = {
        "kind": "distilled_student",
        "teacher": config.teacher,
        "teacher_layers": teacher.num_layers,
        "layer_map": layer_map,
        "initialization": _initialization(config),
        # The weights as resolved for this teacher (no `None`s).
        "distillation": dict(dataclasses.asdict(config.distillation),
                             **{f"alpha_{name}": value for name, value in weights.items()}),
        "steps": config.steps,
    }
    # The student alone: the projection (if any) stays in the checkpoints.
    train_lib.save_final_model(out_dir, distiller.student, out_dir / "student", tokenizer, provenance)
    train_lib.finish_run(out_dir, summary)
    return summary
