"""A masked-LM head fitted to a frozen teacher that has none, so `distill` gets its ce and mlm terms.

    distil-tf fit-mlm-head --teacher all-MiniLM-L6-v2/ \
        --corpus wiki.test.raw --out runs/minilm_mlm --steps 200 --batch-size 16
    distil-tf distill --teacher runs/minilm_mlm --student 3 --corpus ... --out runs/student

Sentence-transformers checkpoints and fine-tuned classifiers ship without the
`cls.predictions` weights, so the paper's soft-target (ce) and masked-LM (mlm)
terms cannot apply to them (`distill.resolve_loss_weights`). This command
adds keras-hub's `MaskedLMHead` the way `Encoder` builds it (tied to the
token embedding), freezes every encoder weight and trains only the head's own
weights (transform dense, layer norm, output bias) on masked-LM batches of a
corpus: the same corpus, masking and `fit` loop (checkpoints, resume,
TensorBoard) as general distillation. The encoder weights it saves are the
teacher's, bit for bit (checked before saving).

The held-out MLM loss and accuracy, before and after fitting, are measured
on `data.validation_corpus`, or, when none is given, on every
`heldout_every`-th line of the corpus, which training then never sees (the
split is written to `OUT/data/`).

Output directory (a run directory: `--teacher OUT` resolves to OUT/teacher):
`config.yaml`, `data/` (the split, when made), `token_counts.npy`,
`checkpoints/`, `tensorboard/`, `teacher/` (the encoder with its fitted head,
loadable by `distil_tf.load_model`, its provenance recording the fit),
`metrics.json`.
"""

import dataclasses
import json
import pathlib
import types

import keras
import numpy as np
from keras import ops

from distil_tf.distillation import losses
from distil_tf.models.distributed_build import DistributedBuildMixin
from distil_tf.training import train_lib
from distil_tf.training.distill import CorpusConfig, DistillationConfig, check_corpus_run, mlm_dataset_factory
from distil_tf.training.optimization import OptimizerConfig, build_optimizer
from distil_tf.training.runtime import RuntimeConfig

MODEL_DIR = "teacher"
SPLIT_DIR = "data"


@dataclasses.dataclass
class MaskingConfig:
    """Which tokens are predicted: general distillation's masking (defaults shared with it)."""

    mask_proportion: float = DistillationConfig.mask_proportion
    mlm_smoothing: float = DistillationConfig.mlm_smoothing
    mask_token_rate: float = DistillationConfig.mask_token_rate
    random_token_rate: float = DistillationConfig.random_token_rate
    budget_counts_special_tokens: bool = DistillationConfig.budget_counts_special_tokens


@dataclasses.dataclass
class FitMlmHeadConfig:
    teacher: str = ""
    out: str = ""
    # Replace an MLM head the teacher already has with a newly fitted one.
    overwrite_head: bool = False
    steps: int = 1000
    checkpoint_every: int = 500
    log_every: int = 50
    # Without data.validation_corpus: every N-th corpus line is held out.
    heldout_every: int = 20
    # Lines of the corpus the split reads (held-out and training together):
    # a head trains on little text (200 steps x 16 x 128 tokens is ~2 MB),
    # and the split is a copy on disk. Pass a validation corpus to train on
    # a larger corpus as it is.
    max_split_lines: int = 200_000
    # Held-out batches scored before and after (of data.batch_size sequences).
    heldout_batches: int = 50
    # "unigram": the head starts as the best predictor that reads no context:
    # its layer-norm scale at 0 (the logits are the bias alone) and its output
    # bias at the log-frequency of the tokens the masker selects (counts **
    # (1 - mlm_smoothing)); training then lets the context in. "keras_hub":
    # keras-hub's random head (unit scale, zero bias), whose random logits
    # start above the uniform loss (measured: 10.7 nats on all-MiniLM-L6-v2,
    # ln 30522 = 10.3).
    head_init: str = "unigram"
    data: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    masking: MaskingConfig = dataclasses.field(default_factory=MaskingConfig)
    # Only the head's ~0.18M weights learn (384 wide, 30522 tokens): ten times
    # the full model's 5e-4, so a few hundred steps move them far enough.
    optimizer: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(learning_rate=5e-3))
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@keras.saving.register_keras_serializable(package="distil_tf")
class MaskedLMHeadFitter(DistributedBuildMixin, keras.Model):
    """Train an `Encoder`'s MLM head on masked-LM batches, the encoder frozen.

    The backbone (the token embedding the head is tied to included) is set
    non-trainable, so the optimizer sees the head's own weights only; it runs
    in inference mode (no dropout), as a teacher does in distillation, so the
    head learns on the features it will later read. Logits are computed only
    at the selected positions: the `[positions, vocab]` product is the cost of
    a head, and 15% of the positions cost 15% of it.

    Args:
        encoder: `Encoder` with an MLM head.

    Call inputs: a masked-LM batch of `build_mlm_dataset`: `token_ids`,
    `padding_mask`, `mlm_labels` `[batch, seq]` (dynamic shapes), plus
    `mask_positions`, `mask_ids`, `mask_weights` `[batch, predictions]`
    (fixed shapes, used when present: static shapes for XLA).

    Call outputs: a dict with `logits` `[rows, predictions, vocab]` float32,
    `labels` int32 and `weights` float32 `[rows, predictions]`: the batch's
    own rows with fixed shapes; one row of every selected position otherwise.
    """

    def __init__(self, encoder, **kwargs):
        if encoder.mlm_head is None:
            raise ValueError("MaskedLMHeadFitter needs an Encoder built with mlm_head=True")
        super().__init__(**kwargs)
        self.encoder = encoder
        # Before compile: the optimizer (and its checkpointed slots) never
        # sees the encoder's weights, which therefore cannot change.
        encoder.backbone.trainable = False
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def call(self, inputs, training=False):
        import tensorflow as tf

        encoder = self.encoder
        # training=False always: frozen weights, and no dropout on the features.
        sequence_output = encoder.hidden_states_model(encoder.backbone_inputs(inputs), training=False)[-1]
        sequence_output = ops.stop_gradient(sequence_output)  # [batch, seq, hidden]
        if "mask_positions" in inputs:
            logits = encoder.mlm_logits(sequence_output, positions=inputs["mask_positions"])
            labels, weights = inputs["mask_ids"], inputs["mask_weights"]
        else:
            selected = tf.where(tf.not_equal(inputs["mlm_labels"], losses.IGNORE_LABEL))  # [n, 2]
            gathered = tf.gather_nd(sequence_output, selected)[None]  # [1, n, hidden]
            positions = tf.range(tf.shape(gathered)[1])[None]  # [1, n]
            logits = encoder.mlm_logits(gathered, positions=positions)
            labels = tf.gather_nd(inputs["mlm_labels"], selected)[None]
            weights = tf.ones_like(labels, dtype="float32")
        return {"logits": ops.cast(logits, "float32"), "labels": ops.cast(labels, "int32"),
                "weights": ops.cast(weights, "float32")}

    def loss_normalizers(self, x, y=None):
        """This replica's count of predicted tokens (train-step hook)."""
        if "mask_weights" in x:
            return {"selected": ops.sum(ops.cast(x["mask_weights"], "float32"))}
        return {"selected": ops.sum(ops.cast(ops.not_equal(x["mlm_labels"], losses.IGNORE_LABEL), "float32"))}

    def micro_batch_loss(self, x, y, y_pred, sample_weight, normalizers):
        """Cross-entropy and accuracy, this micro-batch's shares of the update's means."""
        denominator = normalizers["selected"]
        loss = losses.masked_lm_cross_entropy(y_pred["labels"], y_pred["logits"], y_pred["weights"], denominator)
        correct = ops.cast(ops.equal(ops.argmax(y_pred["logits"], axis=-1), y_pred["labels"]), "float32")
        accuracy = ops.sum(correct * y_pred["weights"]) / ops.maximum(denominator, 1.0)
        return loss, {"accuracy": accuracy}

    def record_update(self, x, loss, terms):
        super().record_update(x, loss, terms)
        # Keras averages a tracker over replicas: replicas x share averages to the global value.
        self.accuracy_tracker.update_state(terms["accuracy"] * _num_replicas())

    @property
    def metrics(self):
        return [*super().metrics, self.accuracy_tracker]

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["encoder"]))


def _num_replicas():
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def with_new_mlm_head(encoder):
    """A copy of `encoder` (same config and backbone weights) with a newly initialized MLM head."""
    from distil_tf.models import Encoder

    config = dict(encoder.get_config(), mlm_head=True)
    fitted = Encoder.from_config(config)
    fitted(fitted.dummy_inputs())
    for target, source in zip(fitted.backbone.weights, encoder.backbone.weights, strict=True):
        if target.path != source.path:
            raise ValueError(f"backbone weights differ in layout: {target.path} vs {source.path}")
        target.assign(source)
    return fitted


def unigram_output_bias(counts, mlm_smoothing, unseen_mass=0.01):
    """Log-probabilities of the tokens the masker selects, `[vocab]` float32.

    A token is selected with weight `count ** -mlm_smoothing`, so selected
    tokens occur in proportion to `count ** (1 - mlm_smoothing)`: the best
    bias for a head that reads no context. Tokens the corpus never has share
    `unseen_mass` (held-out text may have them; training never asks for them).
    """
    counts = np.asarray(counts, np.float64)
    weights = np.where(counts > 0, np.maximum(counts, 1.0) ** (1.0 - mlm_smoothing), 0.0)
    unseen = int(np.sum(counts <= 0))
    probabilities = weights / max(weights.sum(), 1e-12) * (1.0 - unseen_mass if unseen else 1.0)
    if unseen:
        probabilities = np.where(counts > 0, probabilities, unseen_mass / unseen)
    return np.log(probabilities).astype(np.float32)


def start_as_unigram(head, counts, mlm_smoothing):
    """Make `head` (a built `MaskedLMHead`) predict `unigram_output_bias` at every position, whatever its input.

    Its layer-norm scale and shift at 0 leave the logits `0 . embedding + bias`.
    The scale's gradient is not 0 there (the normalized features times the
    output embedding), so the first update lets the context in.
    """
    norm = head._intermediate_layer_norm
    norm.gamma.assign(np.zeros(norm.gamma.shape, np.float32))
    norm.beta.assign(np.zeros(norm.beta.shape, np.float32))
    head._bias.assign(unigram_output_bias(counts, mlm_smoothing))


def split_corpus(sources, directory, heldout_every, max_lines):
    """Every `heldout_every`-th line into `heldout.txt`, the others into `train.txt`.

    Reads the corpus in file order (globs, .gz, TFRecords, tfds, as
    `read_corpus_lines`), at most `max_lines` lines. A split already written
    for the same sources and settings is reused (a resumed run).

    Returns:
        `(train_path, heldout_path, {"lines", "train_lines", "heldout_lines", "truncated"})`.
    """
    from distil_tf.data.corpus import read_corpus_lines

    if heldout_every < 2:
        raise ValueError(f"heldout_every must be >= 2 (one line in N held out), got {heldout_every}")
    directory = pathlib.Path(directory)
    train_path, heldout_path, record_path = directory / "train.txt", directory / "heldout.txt", directory / "split.json"
    settings = {"sources": [str(source) for source in sources], "heldout_every": heldout_every,
                "max_lines": max_lines}
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("settings") == settings and train_path.is_file() and heldout_path.is_file():
            return train_path, heldout_path, record["counts"]
    directory.mkdir(parents=True, exist_ok=True)
    counts = {"lines": 0, "train_lines": 0, "heldout_lines": 0, "truncated": False}
    # The split record is written last: a split cut short is rewritten.
    record_path.unlink(missing_ok=True)
    lines = read_corpus_lines(list(sources), shuffle_files=False)
    with open(train_path, "w", encoding="utf-8") as train, open(heldout_path, "w", encoding="utf-8") as heldout:
        for index, line in enumerate(lines.as_numpy_iterator()):
            if index >= max_lines:
                counts["truncated"] = True
                break
            text = line.decode("utf-8", errors="replace")
            if index % heldout_every == 0:
                heldout.write(text + "\n")
                counts["heldout_lines"] += 1
            else:
                train.write(text + "\n")
                counts["train_lines"] += 1
            counts["lines"] += 1
    if not counts["heldout_lines"] or not counts["train_lines"]:
        raise ValueError(f"the corpus {list(sources)} has {counts['lines']} non-blank lines: too few to hold "
                         f"one in {heldout_every} out; pass a larger corpus or --validation-corpus")
    record_path.write_text(json.dumps({"settings": settings, "counts": counts}, indent=2) + "\n")
    return train_path, heldout_path, counts


def evaluate_heldout(fitter, make_dataset, batch_size, max_batches):
    """Held-out MLM cross-entropy and top-1 accuracy over the predicted tokens (no update).

    Returns:
        `{"mlm_loss", "mlm_accuracy", "tokens", "batches"}`: means over every
        predicted token of the first `max_batches` batches.
    """
    total_loss, total_correct, tokens, batches = 0.0, 0.0, 0.0, 0
    for batch in make_dataset(None, batch_size).take(max_batches):
        outputs = fitter(batch, training=False)
        labels, weights = outputs["labels"], outputs["weights"]
        per_token = ops.sparse_categorical_crossentropy(labels, outputs["logits"], from_logits=True)
        correct = ops.cast(ops.equal(ops.argmax(outputs["logits"], axis=-1), labels), "float32")
        total_loss += float(ops.sum(per_token * weights))
        total_correct += float(ops.sum(correct * weights))
        tokens += float(ops.sum(weights))
        batches += 1
    if not tokens:
        raise ValueError("the held-out text gave no masked token to score: give a longer validation corpus")
    return {"mlm_loss": total_loss / tokens, "mlm_accuracy": total_correct / tokens,
            "tokens": int(tokens), "batches": batches}


def _check_config(config):
    check_corpus_run(config)
    if config.head_init not in ("unigram", "keras_hub"):
        raise ValueError(f"head_init must be 'unigram' or 'keras_hub', got '{config.head_init}'")
    if config.heldout_batches < 1:
        raise ValueError(f"heldout_batches must be >= 1, got {config.heldout_batches}")


def fit_mlm_head(config, callbacks=()):
    """Fit an MLM head to a frozen teacher and save the teacher with it; returns a summary dict.

    Args:
        config: `FitMlmHeadConfig`.
        callbacks: extra Keras callbacks (progress hooks, tests).

    Returns:
        dict with `heldout_before` / `heldout_after` (`evaluate_heldout`),
        `steps`, `resumed_from_step`, `seconds`, `train_loop_seconds`,
        `final_train_loss` (`train_lib.fit_summary`), `trained_weights`,
        `model_dir`...; also written to `OUT/metrics.json`.

    Raises:
        ValueError: no teacher, corpus or output; a teacher that already has
            an MLM head without `overwrite_head`; a corpus too small to split.
    """
    _check_config(config)
    train_lib.use_fixed_shapes_on_tpu(config)
    with train_lib.training_runtime(config.runtime) as strategy:
        return _run(config, strategy, pathlib.Path(config.out), callbacks)


def _run(config, strategy, out_dir, callbacks):
    from distil_tf.data.token_counts import count_tokens, load_token_counts
    from distil_tf.models import describe_model, load_model_and_tokenizer

    with strategy.scope():
        teacher, tokenizer = load_model_and_tokenizer(config.teacher)
        teacher = getattr(teacher, "encoder", teacher)  # a task model: its encoder
        if teacher.mlm_head is not None and not config.overwrite_head:
            raise ValueError(
                f"{config.teacher} already has a masked-LM head: distil with it as is "
                f"(distil-tf distill --teacher {config.teacher}) or pass --overwrite-head to fit a new one"
            )
    # Checked the input first: nothing is written for a refused teacher.
    train_lib.start_run(config, out_dir, "fit-mlm-head")

    split = None
    if config.data.validation_corpus:
        train_corpus, heldout_corpus = list(config.data.corpus), list(config.data.validation_corpus)
    else:
        train_path, heldout_path, split = split_corpus(
            config.data.corpus, out_dir / SPLIT_DIR, config.heldout_every, config.max_split_lines)
        train_corpus, heldout_corpus = [str(train_path)], [str(heldout_path)]
        print(f"held out every {config.heldout_every}th line of the corpus: {split['heldout_lines']} lines "
              f"for the before/after loss, {split['train_lines']} to train on"
              + (f" (read the first {config.max_split_lines} lines only)" if split["truncated"] else ""))
    if config.data.token_counts:
        counts = load_token_counts(config.data.token_counts, tokenizer.vocabulary_size())
    elif (out_dir / "token_counts.npy").is_file():
        counts = load_token_counts(out_dir / "token_counts.npy", tokenizer.vocabulary_size())
    else:
        counts = count_tokens(train_corpus, tokenizer, config.data.max_seq_length, out_dir / "token_counts.npy",
                              vocabulary_size=tokenizer.vocabulary_size(), min_length=config.data.min_seq_length)

    with strategy.scope():
        encoder = with_new_mlm_head(teacher)
        if config.head_init == "unigram":
            start_as_unigram(encoder.mlm_head, counts, config.masking.mlm_smoothing)
        fitter = MaskedLMHeadFitter(encoder)
        fitter.compile(optimizer=build_optimizer(config.optimizer, config.steps),
                       jit_compile=config.runtime.jit_compile)
        fitter(encoder.dummy_inputs() | {"mlm_labels": ops.zeros((1, 4), "int32")})
    trained = sorted(weight.path for weight in fitter.trainable_weights)

    # `mlm_dataset_factory` reads `data`, `runtime.seed` and the masking
    # fields of `distillation`: this run's config under those names.
    pipeline = types.SimpleNamespace(data=config.data, runtime=config.runtime, distillation=config.masking)
    make_train = mlm_dataset_factory(pipeline, tokenizer, counts, train_corpus)
    # Its own seed offset: fixed masks, the same before and after.
    make_heldout = mlm_dataset_factory(pipeline, tokenizer, counts, heldout_corpus, seed_offset=1)
    before = evaluate_heldout(fitter, make_heldout, config.data.batch_size, config.heldout_batches)
    print(f"held-out MLM before fitting: loss {before['mlm_loss']:.4f}, accuracy {before['mlm_accuracy']:.4f} "
          f"({before['tokens']} masked tokens)")

    result, seconds = train_lib.timed_fit(fitter, make_train, out_dir, config.steps, strategy, config, callbacks)
    after = evaluate_heldout(fitter, make_heldout, config.data.batch_size, config.heldout_batches)

    # The promise of this command: the encoder is the teacher's, bit for bit.
    for fitted_weight, teacher_weight in zip(encoder.backbone.weights, teacher.backbone.weights, strict=True):
        if not np.array_equal(np.asarray(fitted_weight), np.asarray(teacher_weight)):
            raise RuntimeError(f"the frozen encoder weight {fitted_weight.path} changed while fitting the head")

    model_dir = out_dir / MODEL_DIR
    summary = {
        "teacher": config.teacher,
        "model_dir": str(model_dir),
        **train_lib.fit_summary(config.steps, result, seconds),
        "heldout_before": before,
        "heldout_after": after,
        "heldout_corpus": heldout_corpus,
        "split": split,
        "trained_weights": trained,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
    }
    provenance = dict(describe_model(config.teacher))
    provenance.setdefault("kind", "teacher_with_fitted_mlm_head")
    provenance.setdefault("base_model", config.teacher)
    provenance["mlm_head"] = {
        "fitted": True,
        "source_model": config.teacher,
        "replaced_existing_head": teacher.mlm_head is not None,
        "corpus": list(config.data.corpus),
        "trained_on": train_corpus,
        "heldout": heldout_corpus,
        "steps": config.steps,
        "batch_size": config.data.batch_size,
        "max_seq_length": config.data.max_seq_length,
        "learning_rate": config.optimizer.learning_rate,
        "seed": config.runtime.seed,
        "head_init": config.head_init,
        "heldout_before": before,
        "heldout_after": after,
    }
    train_lib.save_final_model(out_dir, encoder, model_dir, tokenizer, provenance)
    train_lib.finish_run(out_dir, summary)
    return summary


__all__ = [
    "FitMlmHeadConfig",
    "MaskedLMHeadFitter",
    "MaskingConfig",
    "evaluate_heldout",
    "fit_mlm_head",
    "split_corpus",
    "start_as_unigram",
    "unigram_output_bias",
    "with_new_mlm_head",
]
