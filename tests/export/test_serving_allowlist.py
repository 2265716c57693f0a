"""The exported graph uses only what TF Serving 2.20's model server registers,
and Grappler fuses its matmuls the way the fused graph was written for."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from distil_tf.export import graph_ops
from distil_tf.export.serving_op_list import CORE_OPS, TEXT_OPS


def test_committed_allowlist_is_what_tensorflow_2_20_registers():
    if not tf.__version__.startswith("2.20."):
        pytest.skip(f"the list is TF Serving 2.20's; this is TensorFlow {tf.__version__}")
    core, text = graph_ops.derive_serving_ops()  # in a fresh interpreter
    assert set(core) == CORE_OPS
    assert set(text) == TEXT_OPS
    assert graph_ops.TF_SERVING_TEXT_OPS <= TEXT_OPS
    assert {"PyFunc", "EagerPyFunc"}.isdisjoint(CORE_OPS)


@pytest.mark.parametrize("fixture", ["sst2_export", "mrpc_export"])
def test_export_ops_are_on_the_allowlist_with_cpu_kernels(request, fixture):
    version_dir = request.getfixturevalue(fixture).version_dir
    op_types = graph_ops.saved_model_op_types(version_dir)
    assert op_types <= CORE_OPS | graph_ops.TF_SERVING_TEXT_OPS, op_types - CORE_OPS - TEXT_OPS
    assert graph_ops.missing_cpu_kernels(version_dir) == []
    graph_ops.check_serving_ops(version_dir)


def test_python_function_ops_are_refused(tmp_path):
    module = tf.Module()
    module.double = tf.function(lambda x: tf.py_function(lambda y: y * 2, [x], tf.float32),
                                input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path))
    assert "EagerPyFunc" in graph_ops.unsupported_ops(tmp_path)
    with pytest.raises(ValueError, match="EagerPyFunc"):
        graph_ops.check_serving_ops(tmp_path)


def test_an_op_without_a_cpu_kernel_at_its_dtype_fails_at_export(tmp_path):
    # Lgamma is registered for bfloat16 but has CPU kernels only for
    # float/half/double: it traces and saves, then fails at the first run.
    module = tf.Module()
    module.lgamma = tf.function(lambda x: tf.math.lgamma(x), input_signature=[tf.TensorSpec([None], tf.bfloat16)])
    tf.saved_model.save(module, str(tmp_path))
    with pytest.raises(tf.errors.InvalidArgumentError, match="No OpKernel was registered"):
        tf.saved_model.load(str(tmp_path)).lgamma(tf.constant([1.5], tf.bfloat16))
    assert ("Lgamma", "bfloat16") in graph_ops.missing_cpu_kernels(tmp_path)
    with pytest.raises(ValueError, match=r"Lgamma \(bfloat16\)"):
        graph_ops.check_serving_ops(tmp_path)


# Grappler's remapper, asked in a child process per TF_ENABLE_ONEDNN_OPTS
# (read once at TensorFlow import). Only float32 is asserted: bfloat16
# fusions depend on the CPU (oneDNN takes bfloat16 only with AVX-512).
_REWRITES = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text
    from distil_tf.export import graph_ops
    loaded = tf.saved_model.load(sys.argv[1])
    ops, fused = graph_ops.optimized_graph_ops(loaded.signatures["predict_ids"])
    print(json.dumps({"ops": dict(ops), "fused": [[op, list(f), n] for (op, f), n in fused.items()]}))
""")


def _rewrites(version_dir, onednn):
    env = {"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run([sys.executable, "-c", _REWRITES, str(version_dir)], capture_output=True,
                               text=True, check=True, env={**os.environ, **env})
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return result["ops"], {(op, tuple(fused_ops)): count for op, fused_ops, count in result["fused"]}


@pytest.mark.parametrize("onednn", [False, True], ids=["onednn-off", "onednn-on"])
def test_grappler_fuses_every_matmul_with_its_bias(sst2_export, onednn):
    # sst2_export: DistilBERT, 1 layer, classification head (pre-classifier
    # Dense + ReLU, classifier Dense). Per layer the fused graph has 4
    # MatMul + BiasAdd (QKV, attention output, FFN in, FFN out).
    num_layers = sst2_export.model.encoder.num_layers
    ops, fused = _rewrites(sst2_export.version_dir, onednn)
    assert "MatMul" not in ops and "BiasAdd" not in ops  # all folded into _FusedMatMul
    assert ops["_FusedMatMul"] == 4 * num_layers + 2
    assert fused[("_FusedMatMul", ("BiasAdd", "Relu"))] == 1  # the pre-classifier
    gelu = fused.get(("_FusedMatMul", ("BiasAdd", "GeluExact")), 0)
    if onednn:
        # oneDNN's remapper also takes the exact GELU into the FFN matmul.
        assert gelu == num_layers
        assert fused[("_FusedMatMul", ("BiasAdd",))] == 3 * num_layers + 1
    else:
        # Eigen has no fused GELU: it stays its own ops (Erfc, Mul).
        assert gelu == 0 and "Erfc" in ops
        assert fused[("_FusedMatMul", ("BiasAdd",))] == 4 * num_layers + 1
    # The attention matmuls stay batched matmuls; no fused LayerNorm or
    # attention op comes out of this graph on either setting.
    assert ops["BatchMatMulV2"] == 2 * num_layers
    assert not any("LayerNorm" in op or "Attention" in op for op in ops)
