"""Which op types a SavedModel needs, and whether stock TF Serving has them.

A SavedModel whose graph uses an op the server binary lacks fails to load
with NOT_FOUND "Op type not registered 'X'" (tensorflow/text#200,
serving#1490). `tensorflow/serving:2.20.0` links every core TensorFlow op
plus tensorflow-text 2.20's `ops_lib` (tf_serving_contract.md section 4):
the allowlist is `serving_op_list` (derived from those build rules, see its
docstring), with tf-text narrowed to the ops below. An op that is
registered but has no CPU kernel for the dtype a node uses fails at the
first request instead ("No registered kernel"), which TF Serving's warmup
turns into a failed load: `missing_cpu_kernels` checks that too, against
the kernels TensorFlow registers without oneDNN (what the server runs with
`TF_ENABLE_ONEDNN_OPTS=0`, and the fallback oneDNN uses). `export_model`
checks both before publishing a version.

`optimized_graph_ops` shows what Grappler makes of a signature on CPU (the
remapper's `_FusedMatMul` with its `fused_ops`), for tests and for choosing
graph patterns the server fuses.
"""

import collections
import pathlib

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from distil_tf.export.serving_op_list import CORE_OPS, TEXT_OPS

# tensorflow-text `ops_lib` ops in TF Serving 2.20 (tensorflow-text 2.20 pin),
# the ones a text-in BERT signature can reasonably use. Not listed on purpose:
# `TFText>RoundRobinTrim` and `TFText>RoundRobinGenerateMasks` (trimmer_ops,
# tf-text >= 2.13: in 2.20, but missing from TF Serving 2.12-2.19, so a
# SavedModel with them would not be portable; packing avoids them).
TF_SERVING_TEXT_OPS = frozenset(
    {
        "CaseFoldUTF8",
        "NormalizeUTF8",
        "NormalizeUTF8WithOffsetsMap",
        "FindSourceOffsets",
        "RegexSplitWithOffsets",
        "WordpieceTokenizeWithOffsets",
        "WhitespaceTokenizeWithOffsets",
        "TFText>WhitespaceTokenizeWithOffsetsV2",
        "UnicodeScriptTokenizeWithOffsets",
        "FastWordpieceTokenizeWithOffsets",
        "TFText>FastWordpieceDetokenize",
        "FastBertNormalize",
    }
)
FORBIDDEN_OPS = frozenset({"TFText>RoundRobinTrim", "TFText>RoundRobinGenerateMasks"})


def saved_model_op_types(saved_model_dir):
    """Every op type in a SavedModel: its graphs and their function libraries.

    Args:
        saved_model_dir: a directory holding `saved_model.pb`.

    Returns:
        A set of op type names.
    """
    path = pathlib.Path(saved_model_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    op_types = set()
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        op_types.update(node.op for node in graph.node)
        for function in graph.library.function:
            op_types.update(node.op for node in function.node_def)
    return op_types


def is_core_op(op_type):
    """Whether `op_type` is a core TensorFlow op registered in TF Serving 2.20's model server."""
    return op_type in CORE_OPS


_DERIVE_OPS = """
import json
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as session

def registered():
    op_list = op_def_pb2.OpList()
    op_list.ParseFromString(session.TF_GetBuffer(session.TF_GetAllOpList()))
    return {op.name for op in op_list.op}

before = registered()
import tensorflow_text
core = (before & set(dir(tf.raw_ops))) - {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
print(json.dumps([sorted(core), sorted(registered() - before)]))
"""


def derive_serving_ops():
    """`(core_ops, text_ops)` as TensorFlow and tensorflow-text register them: how `serving_op_list` was made.

    Core: ops registered before tensorflow-text is imported that have a
    `tf.raw_ops` wrapper, minus the Python-kernel ops; text: the ops
    importing tensorflow-text adds. Run in a fresh interpreter (this one
    may have imported tensorflow-text already); meaningful with TensorFlow
    2.20 and tensorflow-text 2.20, the server's pins.
    """
    import json
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-c", _DERIVE_OPS], capture_output=True, text=True, check=True)
    core, text = json.loads(completed.stdout.strip().splitlines()[-1])
    return frozenset(core), frozenset(text)


def unsupported_ops(saved_model_dir):
    """Op types of a SavedModel that stock TF Serving 2.20 may not have, sorted."""
    op_types = saved_model_op_types(saved_model_dir)
    return sorted(
        op
        for op in op_types
        if op in FORBIDDEN_OPS or not (is_core_op(op) or op in TF_SERVING_TEXT_OPS)
    )


def _nodes(saved_model_dir):
    path = pathlib.Path(saved_model_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        yield from meta_graph.graph_def.node
        for function in meta_graph.graph_def.library.function:
            yield from function.node_def


def _kernel_accepts(kernel, node):
    for constraint in kernel.constraint:
        value = node.attr.get(constraint.name)
        if value is None:
            continue  # attr left at its default in the NodeDef
        allowed = set(constraint.allowed_values.list.type)
        if value.HasField("type") and value.type not in allowed:
            return False
    return True


def missing_cpu_kernels(saved_model_dir):
    """`(op, dtype)` pairs of the SavedModel with no plain CPU kernel, sorted.

    Plain: registered for device CPU without a kernel label (labelled
    kernels, e.g. oneDNN's, are picked only on request). Ops with no kernel
    at all on purpose (function calls, `NoOp`-like graph plumbing that the
    runtime lowers) are skipped: only ops with some registered kernel are
    checked for one that accepts the node's dtype.
    """
    from tensorflow.python.framework import kernels

    cache, missing = {}, set()
    for node in _nodes(saved_model_dir):
        if node.op not in cache:
            try:
                registered = kernels.get_registered_kernels_for_op(node.op).kernel
            except Exception:  # unregistered op: `unsupported_ops` reports it
                registered = []
            cache[node.op] = [kernel for kernel in registered if kernel.device_type == "CPU" and not kernel.label]
        cpu_kernels = cache[node.op]
        if not cpu_kernels:
            continue
        if not any(_kernel_accepts(kernel, node) for kernel in cpu_kernels):
            dtype = node.attr["T"].type if "T" in node.attr else None
            missing.add((node.op, tf.dtypes.as_dtype(dtype).name if dtype else "?"))
    return sorted(missing)


def check_serving_ops(saved_model_dir):
    """Raise `ValueError` when the SavedModel uses an op, or an op at a dtype, stock TF Serving lacks."""
    missing = unsupported_ops(saved_model_dir)
    if missing:
        raise ValueError(
            f"the SavedModel uses ops stock TF Serving 2.20 may not register: "
            f"{', '.join(missing)}; keep tokenization on the client (predict_ids) "
            "or export with the tensorflow-text version the serving image pins"
        )
    no_kernel = missing_cpu_kernels(saved_model_dir)
    if no_kernel:
        raise ValueError(
            "the SavedModel runs ops at dtypes TF Serving 2.20 has no CPU kernel for: "
            + ", ".join(f"{op} ({dtype})" for op, dtype in no_kernel)
            + "; the server would fail at warmup; export in float32 (--precision float32)"
        )


def optimized_graph_ops(concrete_function):
    """What Grappler's default CPU pipeline makes of a signature.

    The function's own graph (variables stay resource reads, as in the
    server; a frozen copy would let constant folding turn `BiasAdd` into
    `AddV2` and hide the fusions), every node placed on CPU, optimized with
    `tf_optimizer.OptimizeGraph`. oneDNN-only rewrites (GELU into
    `_FusedMatMul`) follow `TF_ENABLE_ONEDNN_OPTS` as read at TensorFlow
    import; the oneDNN layout pass that later renames ops to `_Mkl*` runs
    inside the executor and is not shown.

    Returns:
        `(op_counts, fused_counts)`: `Counter` of op types, and `Counter` of
        `(op, tuple(fused_ops))` for fused nodes.
    """
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer

    graph_def = concrete_function.graph.as_graph_def()
    for node in graph_def.node:
        node.device = "/job:localhost/replica:0/task:0/device:CPU:0"
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
    meta_graph.collection_def["train_op"].node_list.value.extend(
        tensor.name for tensor in concrete_function.outputs)
    optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta_graph)
    op_counts, fused_counts = collections.Counter(), collections.Counter()
    nodes = list(optimized.node) + [node for function in optimized.library.function for node in function.node_def]
    for node in nodes:
        op_counts[node.op] += 1
        if "fused_ops" in node.attr:
            fused_counts[(node.op, tuple(op.decode() for op in node.attr["fused_ops"].list.s))] += 1
    return op_counts, fused_counts
