"""`distil-tf benchmark kernels`: every projection kernel computes `x @ W + b`, within its precision's error.

Tiny shapes, the real kernels: each TensorFlow kernel in a child process with
the oneDNN setting its name says, as the benchmark runs them. The int8 oneDNN
kernel is the one to watch: its MIN_FIRST mode is off by four orders of
magnitude in TF 2.20, so a regression to it fails here. No timing is asserted.
"""

import pytest

from distil_tf.benchmarks import kernels
from distil_tf.export import inference_options

SHAPE = {"hidden_dim": 32, "intermediate_dim": 64, "num_layers": 3, "rows": 5}
# Float32 products of 32-64 terms against float64: rounding only.
FP32_ERROR = 1e-5
# bfloat16 operands keep 8 bits of mantissa (relative 2^-8 per operand).
BF16_ERROR = 2e-2
# Without AVX512-BF16 or AMX, oneDNN emulates bfloat16 and its results are
# rougher: 3.2e-2 on this chain, 6.9e-2 at DistilBERT's shapes, against
# 1.1e-2 natively (Zen 3 vs Zen 4 EPYC, 2026-12-07,
# results/kernels_amd_epyc_zen{3,4}.md). One more reason `--precision auto`
# keeps float32 on such CPUs.
EMULATED_BF16_ERROR = 8e-2
NATIVE_BF16 = bool(inference_options.NATIVE_BFLOAT16_FLAGS & inference_options.cpu_flags())
# int8 weights (per tensor or per column) and 8-bit activations: about 1% of the output range.
INT8_ERROR = 4e-2
TOLERANCE = {"tf-fp32": FP32_ERROR, "tf-fp32+onednn": FP32_ERROR,
             "tf-bf16+onednn": BF16_ERROR if NATIVE_BF16 else EMULATED_BF16_ERROR,
             "tf-int8+onednn": INT8_ERROR, "tf-int8-hybrid": INT8_ERROR, "ort-fp32": FP32_ERROR, "ort-int8": INT8_ERROR}


def test_projection_shapes_are_one_layers_four_matmuls():
    assert kernels.projection_shapes(768, 3072) == {
        "qkv": (768, 2304), "attention_output": (768, 768), "intermediate": (768, 3072),
        "feedforward_output": (3072, 768)}


def test_the_reference_chain_is_the_models_projection_order():
    x, layers = kernels.operands(rows=2, hidden_dim=4, intermediate_dim=8, num_layers=2)
    assert [layers[0][name][0].shape for name in kernels.PROJECTIONS] == [(4, 12), (4, 4), (4, 8), (8, 4)]
    expected = x.astype("float64")
    for layer in layers:
        expected = (expected @ layer["qkv"][0] + layer["qkv"][1])[:, :4]
        for name in ("attention_output", "intermediate", "feedforward_output"):
            expected = expected @ layer[name][0] + layer[name][1]
    assert kernels.reference_forward(x, layers) == pytest.approx(expected, rel=1e-12)
    # Unit-scale activations survive the chain, so the error check reads every layer.
    assert 0.3 < float(abs(expected).std()) < 3


def test_every_kernel_computes_the_projection_chain():
    pytest.importorskip("onnxruntime")
    report = kernels.run(kernels.ALL_KERNELS, iterations=1, **SHAPE)
    assert list(report["kernels"]) == list(kernels.ALL_KERNELS)
    # 3 layers x 2 * rows * (in * out) over qkv (32x96), output (32x32), intermediate (32x64), feed-forward (64x32).
    assert report["flops"] == 3 * 2 * 5 * (32 * 96 + 32 * 32 + 32 * 64 + 64 * 32)
    for kernel, entry in report["kernels"].items():
        assert entry["relative_error"] < TOLERANCE[kernel], (kernel, entry["relative_error"])
        if "int8" in kernel or "bf16" in kernel:
            assert entry["relative_error"] > 1e-4, f"{kernel} is not running in reduced precision"
        assert entry["gflops"] == pytest.approx(report["flops"] / entry["forward_ms"] / 1e6)
    table = kernels.format_table(report).splitlines()
    assert table[0].startswith("The projection matmuls of one forward pass: 3 layers x 4")
    assert [line.split(" | ")[0] for line in table[4:]] == [f"| {kernel}" for kernel in kernels.ALL_KERNELS]
    # ort-fp32 is the ratio's reference: exactly 1.00 on its own row.
    assert table[4 + kernels.ALL_KERNELS.index("ort-fp32")].split(" | ")[3] == "1.00"
