"""`InferenceOptions`: how an exported model runs its forward pass.

Levers for fast CPU inference at batch size 1, each measured as its own row
by `distil-tf benchmark speed` (`distil_tf.benchmarks.speed`):

- **Fused encoder graph** (`fused_graph`, the default): `FusedEncoder`, the
  same weights laid out for a batch-1 CPU pass. Outputs equal the keras-hub
  graph to float32 rounding (tested to 1e-5).
- **Bucketed sequence lengths** (`buckets`): inputs are padded in the graph,
  before the model, up to the next of a few bucket lengths. Padding is
  masked, so outputs on real positions are unchanged; the cost is the padded
  positions' compute (at most one bucket step).
- **XLA** (`jit_compile`) on the model call. XLA compiles one executable per
  input shape: with a new length per sentence that is a compilation per
  request (seconds each), so it is only worth it with buckets, which bound
  the shapes to `len(buckets)`. Stock TF Serving runs XLA-marked functions on
  CPU only with `--xla_cpu_compilation_enabled=true`, which is why it is not
  a default.
- **Compute dtype** (`compute_dtype="bfloat16"`): weights cast once at
  export; on the fused graph only the projections run in bfloat16. Pays
  only on CPUs with native bfloat16 dot products (AVX512-BF16, AMX);
  elsewhere oneDNN emulates it. It changes outputs, so its accuracy
  cost is measured (`distil_tf.benchmarks.fast_inference.sst2_accuracy`).
"""

import dataclasses
import warnings

import numpy as np
import tensorflow as tf

from distil_tf.models import Encoder, TaskModel

# Multiples of 8 up to 128 (STS-B dev pairs are 11-87 WordPieces, mean 31.5:
# 10 shapes, 11% padded positions; multiples of 16 would mean 6 shapes but
# 26% padding), then coarser steps up to BERT's 512 positions.
DEFAULT_BUCKETS = tuple(range(8, 129, 8)) + (160, 192, 256, 384, 512)


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """Which levers an exported model uses.

    Args:
        fused_graph: bool. Serve the encoder through `FusedEncoder` (fused
            QKV projection, 2-D matmuls, scale folded into the query)
            instead of the keras-hub layers; same weights.
        buckets: tuple of int or None. Pad each input up to the next bucket
            length (inputs longer than the longest bucket run at their own
            length). `None`: no padding.
        jit_compile: bool. Compile the model call with XLA.
        compute_dtype: str. "float32" or "bfloat16" (fused graph: the
            projections in bfloat16; keras-hub graph: every layer).
    """

    fused_graph: bool = True
    buckets: tuple = None
    jit_compile: bool = False
    compute_dtype: str = "float32"

    def __post_init__(self):
        if self.buckets is not None:
            buckets = tuple(int(length) for length in self.buckets)
            if not buckets or any(length < 1 for length in buckets):
                raise ValueError(f"buckets must be positive lengths, got {self.buckets}")
            object.__setattr__(self, "buckets", tuple(sorted(set(buckets))))
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"compute_dtype must be 'float32' or 'bfloat16', got '{self.compute_dtype}'"
            )

    @property
    def label(self):
        """A short name for tables: the levers beyond the default, e.g. "xla+buckets"."""
        parts = [] if self.fused_graph else ["keras-layers"]
        if self.jit_compile:
            parts.append("xla")
        if self.buckets:
            parts.append("buckets")
        if self.compute_dtype == "bfloat16":
            parts.append("bf16")
        return "+".join(parts) or "default"


def bucket_lengths(lengths, buckets):
    """Padded length of each input length (NumPy twin of `pad_to_bucket`)."""
    buckets = np.asarray(sorted(buckets))
    lengths = np.asarray(lengths)
    index = np.minimum(np.searchsorted(buckets, lengths, side="left"), len(buckets) - 1)
    return np.maximum(buckets[index], lengths)


def pad_to_bucket(features, buckets):
    """Pad `[batch, T]` int features with zeros up to the next bucket length.

    Zero is `[PAD]`, segment 0 and "masked out", so padded positions are
    invisible to attention. Inputs longer than the longest bucket stay as
    they are.

    Returns:
        `(padded_features, T)`: the original length to slice outputs back to.
    """
    length = tf.shape(features["token_ids"])[1]
    bucket_table = tf.constant(sorted(buckets), tf.int32)
    index = tf.minimum(
        tf.searchsorted(bucket_table, tf.reshape(length, [1]), side="left")[0],
        len(buckets) - 1,
    )
    target = tf.maximum(bucket_table[index], length)
    paddings = [[0, 0], [0, target - length]]
    padded = {key: tf.pad(value, paddings) for key, value in features.items()}
    return padded, length


def with_compute_dtype(model, dtype):
    """A copy of a `TaskModel` (or an `Encoder`) whose weights and compute are in `dtype`.

    Builds the same architecture under the plain `dtype` policy (not
    `mixed_*`: a mixed policy keeps float32 variables and casts every weight
    on every call, 110M casts per BERT-base request) and copies the weights,
    cast once. A float32 model is returned as is.
    """
    source_encoder = model if isinstance(model, Encoder) else model.encoder
    if dtype == "float32" and source_encoder.dtype_policy.name == "float32":
        return model
    config = dict(source_encoder.get_config(), dtype=dtype)
    config.pop("name", None)
    encoder = Encoder.from_config(config)
    encoder(encoder.dummy_inputs())
    if isinstance(model, Encoder):
        _copy_weights(model, encoder)
        return encoder
    # The head from the model's own config (every head option, e.g. an
    # inherited head without the pre-classifier), only the encoder replaced.
    head_config = dict(model.get_config(), encoder=encoder)
    head_config.pop("name", None)
    copy = TaskModel.from_config(head_config)
    copy(copy.dummy_inputs())
    _copy_weights(model, copy)
    return copy


def _copy_weights(source_model, target_model):
    source = source_model.weights
    target = target_model.weights
    if len(source) != len(target):
        raise ValueError(f"weight lists differ ({len(source)} vs {len(target)}) after the dtype rebuild")
    for variable, value in zip(target, source):
        variable.assign(tf.cast(value, variable.dtype))


# ---------------------------------------------------------------------------
# Export precision: `distil-tf export --precision auto|float32|bfloat16`
# ---------------------------------------------------------------------------

PRECISIONS = ("auto", "float32", "bfloat16")
# /proc/cpuinfo flags of native bfloat16 dot products: AVX512-BF16 (Cooper
# Lake, Zen 4) or AMX (Sapphire Rapids on). Without them oneDNN (and Eigen)
# emulate bfloat16 with float32 arithmetic plus conversions: slower than
# float32, not faster.
NATIVE_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "amx_tile"})


class EmulatedBfloat16Warning(UserWarning):
    """`--precision bfloat16` on a CPU without native bfloat16: it will be emulated and slow."""


def cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    """The first `flags` line of `cpuinfo_path` as a set (empty when unreadable, e.g. not Linux)."""
    try:
        with open(cpuinfo_path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(precision="auto", cpuinfo_path="/proc/cpuinfo"):
    """The compute dtype an export uses, and why.

    Args:
        precision: str. "auto" (bfloat16 where the CPU has AVX512-BF16 or
            AMX, else float32), "float32" or "bfloat16".
        cpuinfo_path: where the CPU flags are read (a fake file in tests).
            The export is meant for a server on the same kind of CPU.

    Returns:
        `(compute_dtype, reason)`: "float32" or "bfloat16", and a one-line
        explanation for the export's metadata and the CLI.

    Warns:
        EmulatedBfloat16Warning: "bfloat16" asked for on a CPU without it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    native = sorted(NATIVE_BFLOAT16_FLAGS & cpu_flags(cpuinfo_path))
    if precision == "float32":
        return "float32", "float32 requested"
    if precision == "bfloat16":
        if not native:
            warnings.warn(
                "--precision bfloat16 on a CPU without AVX512-BF16 or AMX: bfloat16 will be emulated "
                "and slower than float32", EmulatedBfloat16Warning, stacklevel=2)
            return "bfloat16", "bfloat16 requested (emulated: the CPU has no avx512_bf16/amx_bf16)"
        return "bfloat16", f"bfloat16 requested (native: {', '.join(native)})"
    if native:
        return "bfloat16", f"auto: the CPU has {', '.join(native)}"
    return "float32", "auto: the CPU has no avx512_bf16/amx_bf16/amx_tile"


def options_for_precision(compute_dtype, fused_graph=True):
    """`InferenceOptions` of an export at `compute_dtype`, without XLA.

    bfloat16 on the fused graph runs its projections in bfloat16 (weights
    cast once, `FusedEncoder`); with `fused_graph=False` the keras-hub graph
    is rebuilt under the plain bfloat16 policy instead. The fused one is the
    faster of the two (`distil-tf benchmark speed`, runners
    `tf-savedmodel+bf16+onednn` and `tf-savedmodel+keras-layers+bf16+onednn`)
    and keeps LayerNorm and softmax in float32.
    """
    return InferenceOptions(fused_graph=fused_graph, compute_dtype=compute_dtype)
