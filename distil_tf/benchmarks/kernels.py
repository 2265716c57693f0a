"""Projection kernels at batch-1 shapes: where the export's time goes, kernel by kernel.

The TF profiler puts about 90% of the exported student's batch-1 time in its
four projection matmuls per layer (QKV `[hidden, 3 * hidden]`, attention
output `[hidden, hidden]`, feed-forward `[hidden, intermediate]` and
`[intermediate, hidden]`), applied to `rows = batch * seq` rows: about 19 for
a batch-1 STS-B pair. `distil-tf benchmark kernels` times exactly those
products in every kernel a TensorFlow server could run them with, beside ONNX
Runtime's MLAS kernels, so the gap between our export and ORT is measured
where it arises rather than argued from totals:

- `tf-fp32`: `MatMul` + `BiasAdd`, oneDNN off (Eigen);
- `tf-fp32+onednn`: the same graph with oneDNN on (`_MklMatMul`...);
- `tf-bf16+onednn`: bfloat16 operands (the `--precision bfloat16` export);
- `tf-int8+onednn`: `QuantizeV2` of the activations (dynamic range) into
  `QuantizedMatMulWithBiasAndDequantize` with int8 weights; oneDNN has the
  only real kernel (without it the op's CPU kernel is a placeholder that
  fails with "Missing 0-th output"). The kernel's `MIN_FIRST` mode
  returned outputs 10^4 times too large in TF 2.20, so the activations are
  shifted to be non-negative and quantized `SCALED` as quint8, and the shift
  is added back as `shift * column_sums(W)`: one extra `[out]` vector;
- `tf-int8-hybrid`: `UniformQuantizedDotHybrid` (float activations, per-
  column int8 weights), the op TF's own quantizer emits for servers;
- `ort-fp32`: ONNX Runtime `MatMul` + `Add`;
- `ort-int8`: the same model through `quantize_dynamic` (int8 weights,
  `DynamicQuantizeLinear` + `MatMulInteger`), ORT's int8 runner.

The timed unit is one forward pass's projections as the model runs them:
`num_layers` layers, each with its own weights (a batch-1 pass streams all
of them from memory), each projection's input the previous one's output (QKV
feeds its first `hidden` columns on, in place of attention). Independent
products would flatter TensorFlow, whose executor overlaps them: DistilBERT's
24 projections took 10.7 ms independent and 16.7 chained here (Zen 4, 2
threads), against ORT's 9.5 and 11.6. The chained figure is the one the
TF profiler shows for the exported graph's MatMuls (16.4 ms).
TensorFlow kernels are timed in a child process started with their
`TF_ENABLE_ONEDNN_OPTS`, since TensorFlow reads it once. Every kernel's
output is checked against the float64 chain (`max |error| / max
|reference|`), so a fast but wrong kernel shows as such.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

TF_KERNELS = {  # name: oneDNN on in the child
    "tf-fp32": False,
    "tf-fp32+onednn": True,
    "tf-bf16+onednn": True,
    "tf-int8+onednn": True,
    "tf-int8-hybrid": False,
}
ORT_KERNELS = ("ort-fp32", "ort-int8")
ALL_KERNELS = tuple(TF_KERNELS) + ORT_KERNELS
# DistilBERT-base; rows: the mean WordPiece length of a batch-1 STS-B dev pair (18.7).
DEFAULT_SHAPE = {"hidden_dim": 768, "intermediate_dim": 3072, "num_layers": 6, "rows": 19}
PROJECTIONS = ("qkv", "attention_output", "intermediate", "feedforward_output")


def projection_shapes(hidden_dim, intermediate_dim):
    """`{name: (in, out)}` of one transformer layer's projections (QKV fused, as the export runs it)."""
    return {"qkv": (hidden_dim, 3 * hidden_dim), "attention_output": (hidden_dim, hidden_dim),
            "intermediate": (hidden_dim, intermediate_dim), "feedforward_output": (intermediate_dim, hidden_dim)}


def operands(rows, hidden_dim, intermediate_dim, num_layers, seed=0):
    """Activations `x [rows, hidden]` and per layer `{projection: (w [in, out], b [out])}`.

    Weights are scaled by 1/sqrt(in), so activations keep unit scale
    through the chain and the error check reads every layer.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, hidden_dim)).astype(np.float32)
    layers = []
    for _ in range(num_layers):
        layer = {}
        for name, (fan_in, fan_out) in projection_shapes(hidden_dim, intermediate_dim).items():
            layer[name] = ((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32),
                           (rng.standard_normal(fan_out) * 0.02).astype(np.float32))
        layers.append(layer)
    return x, layers


def reference_forward(x, layers):
    """The projection chain in float64: `[rows, hidden]` -> `[rows, hidden]`."""
    x = x.astype(np.float64)
    hidden_dim = x.shape[1]
    for layer in layers:
        for name in PROJECTIONS:
            w, b = layer[name]
            x = x @ w.astype(np.float64) + b
            if name == "qkv":
                x = x[:, :hidden_dim]
    return x


def _relative_error(got, reference):
    return float(np.abs(got - reference).max() / np.abs(reference).max())


def _timed(call, iterations, passes=3):
    """Best of `passes` mean times (ms) of `call()`, after warm-up; best-of filters other processes' bursts."""
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for _ in range(iterations):
            call()
        best = min(best, (time.perf_counter() - start) / iterations * 1e3)
    return best


def _tf_projection(kernel, w, b):
    """`x [rows, in] -> x @ w + b [rows, out]` (float32 in and out) with `kernel`'s ops and weights."""
    import tensorflow as tf

    if kernel in ("tf-fp32", "tf-fp32+onednn"):
        weight, bias = tf.constant(w), tf.constant(b)
        return lambda x: tf.nn.bias_add(tf.matmul(x, weight), bias)
    if kernel == "tf-bf16+onednn":
        weight, bias = tf.constant(w, tf.bfloat16), tf.constant(b, tf.bfloat16)
        return lambda x: tf.cast(tf.nn.bias_add(tf.matmul(tf.cast(x, tf.bfloat16), weight), bias), tf.float32)
    if kernel == "tf-int8+onednn":
        weight_range = float(np.abs(w).max())
        quantized_weight = np.clip(np.round(w / weight_range * 127), -127, 127).astype(np.int8)
        weight = tf.constant(quantized_weight, tf.qint8)
        # x @ W = (x - m) @ W + m * sum_k W[k, :], W as the kernel dequantizes it.
        column_sums = tf.constant(quantized_weight.astype(np.float32).sum(0) * weight_range / 127)
        bias = tf.constant(b)

        def project(x):
            shift = tf.reduce_min(x)
            shifted = x - shift
            quantized, low, high = tf.raw_ops.QuantizeV2(
                input=shifted, min_range=0.0, max_range=tf.reduce_max(shifted), T=tf.quint8, mode="SCALED")
            product = tf.raw_ops.QuantizedMatMulWithBiasAndDequantize(
                a=quantized, b=weight, bias=bias, min_a=low, max_a=high, min_b=-weight_range, max_b=weight_range,
                min_freezed_output=-1.0, max_freezed_output=1.0, Toutput=tf.float32, input_quant_mode="SCALED")
            return product + shift * column_sums
        return project
    if kernel == "tf-int8-hybrid":
        scales = np.abs(w).max(0) / 127
        weight = tf.constant(np.round(w / scales).astype(np.int8), tf.qint8)
        scales, zero_points, bias = tf.constant(scales.astype(np.float32)), tf.zeros([w.shape[1]], tf.int32), tf.constant(b)
        return lambda x: tf.nn.bias_add(tf.raw_ops.UniformQuantizedDotHybrid(
            lhs=x, rhs=weight, rhs_scales=scales, rhs_zero_points=zero_points, Tout=tf.float32,
            rhs_quantization_axis=1, rhs_quantization_min_val=-128, rhs_quantization_max_val=127), bias)
    raise ValueError(f"unknown TensorFlow kernel '{kernel}'")


def time_tf_kernel(kernel, shape, iterations, threads=None):
    """`(forward ms, relative error)` of one TF kernel, in this process (its oneDNN mode fixed)."""
    import tensorflow as tf

    from distil_tf.benchmarks.fast_inference import configure_threads

    configure_threads(intra_op=threads, inter_op=1)
    x, layers = operands(**shape)
    projections = [[_tf_projection(kernel, *layer[name]) for name in PROJECTIONS] for layer in layers]
    hidden_dim = shape["hidden_dim"]

    @tf.function
    def forward(inputs):
        for layer in projections:
            inputs = layer[0](inputs)[:, :hidden_dim]
            for project in layer[1:]:
                inputs = project(inputs)
        return inputs

    inputs = tf.constant(x)
    error = _relative_error(forward(inputs).numpy(), reference_forward(x, layers))
    return _timed(lambda: forward(inputs), iterations), error


def _ort_model(layers, rows, hidden_dim):
    """ONNX: the projection chain (`MatMul` + `Add`, a `Slice` after QKV), input `x [rows, hidden]`."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers, current = [], [], "x"
    for index, layer in enumerate(layers):
        for name in PROJECTIONS:
            w, b = layer[name]
            prefix = f"layer{index}_{name}"
            initializers += [numpy_helper.from_array(w, f"{prefix}_w"), numpy_helper.from_array(b, f"{prefix}_b")]
            nodes += [helper.make_node("MatMul", [current, f"{prefix}_w"], [f"{prefix}_m"]),
                      helper.make_node("Add", [f"{prefix}_m", f"{prefix}_b"], [f"{prefix}_y"])]
            current = f"{prefix}_y"
            if name == "qkv":
                nodes.append(helper.make_node("Slice", [current, "zero", "hidden", "one"], [f"{prefix}_sliced"]))
                current = f"{prefix}_sliced"
    initializers += [numpy_helper.from_array(np.array([value], np.int64), name)
                     for name, value in (("zero", 0), ("hidden", hidden_dim), ("one", 1))]
    graph = helper.make_graph(nodes, "projections", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, hidden_dim])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [rows, hidden_dim])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime 1.2x reads
    return model


def time_ort_kernel(kernel, shape, iterations, threads=None):
    """`(forward ms, relative error)` of ONNX Runtime fp32, or int8 through `quantize_dynamic`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from distil_tf.benchmarks.speed import ort_session

    x, layers = operands(**shape)
    with tempfile.TemporaryDirectory() as work_dir:
        path = pathlib.Path(work_dir) / "projections.onnx"
        onnx.save(_ort_model(layers, shape["rows"], shape["hidden_dim"]), path)
        if kernel == "ort-int8":
            quantize_dynamic(str(path), str(path.with_suffix(".int8.onnx")), weight_type=QuantType.QInt8)
            path = path.with_suffix(".int8.onnx")
        session = ort_session(path, threads)
    error = _relative_error(session.run(None, {"x": x})[0], reference_forward(x, layers))
    return _timed(lambda: session.run(None, {"x": x}), iterations), error


def _time_tf_in_child(kernel, shape, iterations, threads):
    """Run `time_tf_kernel` in a fresh interpreter with the kernel's TF_ENABLE_ONEDNN_OPTS; its result."""
    spec = json.dumps({"kernel": kernel, "shape": shape, "iterations": iterations, "threads": threads})
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if TF_KERNELS[kernel] else "0", TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run([sys.executable, "-m", "distil_tf.benchmarks.kernels", "--child", spec],
                               env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"kernel {kernel} failed in its child process:\n{completed.stderr[-3000:]}")
    return tuple(json.loads(completed.stdout.strip().splitlines()[-1]))


def run(kernels=ALL_KERNELS, hidden_dim=768, intermediate_dim=3072, num_layers=6, rows=19, iterations=30,
        threads=None, progress=None):
    """Time `kernels` on one forward pass's projection chain; the report (JSON-able dict).

    Per kernel: `forward_ms` (the chain of `num_layers * 4` projections on
    `rows` tokens), `gflops` and `relative_error` against float64.
    """
    unknown = [kernel for kernel in kernels if kernel not in ALL_KERNELS]
    if unknown:
        raise ValueError(f"unknown kernel(s) {', '.join(unknown)}; expected some of {', '.join(ALL_KERNELS)}")
    if min(hidden_dim, intermediate_dim, num_layers, rows, iterations) < 1:
        raise ValueError("hidden_dim, intermediate_dim, num_layers, rows and iterations must all be >= 1")
    # Imported after the checks: they load TensorFlow, seconds a bad flag need not wait.
    from distil_tf.benchmarks.fast_inference import cpu_info
    from distil_tf.benchmarks.speed import package_versions

    shape = {"hidden_dim": hidden_dim, "intermediate_dim": intermediate_dim, "num_layers": num_layers, "rows": rows}
    flops = num_layers * sum(2 * rows * fan_in * fan_out
                             for fan_in, fan_out in projection_shapes(hidden_dim, intermediate_dim).values())
    report = {"cpu": cpu_info(), "packages": package_versions(), "threads": threads or os.cpu_count(), "shape": shape,
              "flops": int(flops), "iterations": iterations, "kernels": {}}
    for kernel in kernels:
        if progress:
            progress(kernel)
        if kernel in TF_KERNELS:
            forward_ms, error = _time_tf_in_child(kernel, shape, iterations, threads)
        else:
            forward_ms, error = time_ort_kernel(kernel, shape, iterations, threads)
        report["kernels"][kernel] = {"forward_ms": forward_ms, "gflops": flops / forward_ms / 1e6,
                                     "relative_error": error}
    return report


def format_table(report):
    """The report as a markdown table: forward-pass ms, GFLOP/s, ratio to ORT fp32, error."""
    shape, kernels = report["shape"], report["kernels"]
    baseline = kernels.get("ort-fp32")
    lines = [f"The projection matmuls of one forward pass: {shape['num_layers']} layers x 4 (QKV, attention output, "
             f"feed-forward in and out), hidden {shape['hidden_dim']}, intermediate {shape['intermediate_dim']}, "
             f"{shape['rows']} rows (batch 1), chained as in the model. {report['threads']} threads; CPU: "
             f"{report['cpu'].get('model', 'unknown')}.", "",
             "| kernel | forward pass ms | GFLOP/s | x ort-fp32 | max rel. error vs float64 |", "|---|---|---|---|---|"]
    for kernel, entry in kernels.items():
        ratio = f"{entry['forward_ms'] / baseline['forward_ms']:.2f}" if baseline else "-"
        lines.append(f"| {kernel} | {entry['forward_ms']:.2f} | {entry['gflops']:.0f} | {ratio} | "
                     f"{entry['relative_error']:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    spec = json.loads(sys.argv[2])
    print(json.dumps(time_tf_kernel(spec["kernel"], spec["shape"], spec["iterations"], spec["threads"])))
