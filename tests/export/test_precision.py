"""`--precision auto|float32|bfloat16` at export: the CPU rule, the warning, the outputs."""

import json
import warnings

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.cli import build_parser
from distil_tf.export import export_model
from distil_tf.export.exporter import read_inference_config
from distil_tf.export.inference_options import (
    EmulatedBfloat16Warning,
    InferenceOptions,
    cpu_flags,
    options_for_precision,
    resolve_precision,
)
from distil_tf.models import save_model

# First lines of real /proc/cpuinfo files, flags shortened to the ones that
# matter plus neighbours (an EPYC like this machine's, a Sapphire Rapids
# Xeon like the issue's, a Cooper Lake Xeon: AVX512-BF16 without AMX).
AMD_EPYC_ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni vaes vpclmulqdq
"""
INTEL_SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
"""
INTEL_COOPER_LAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8380H CPU @ 2.90GHz
flags\t\t: fpu sse avx avx2 avx512f avx512bw avx512_vnni avx512_bf16
"""


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return path

    return write


@pytest.mark.parametrize(
    "text, expected",
    [(INTEL_SAPPHIRE_RAPIDS, "bfloat16"), (INTEL_COOPER_LAKE, "bfloat16"), (AMD_EPYC_ZEN3, "float32")],
    ids=["intel-amx", "intel-avx512-bf16", "amd-no-bf16"],
)
def test_auto_picks_bfloat16_only_where_the_cpu_has_it(cpuinfo, text, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        dtype, reason = resolve_precision("auto", cpuinfo(text))
    assert dtype == expected
    assert reason.startswith("auto: ")
    if expected == "bfloat16":
        assert "avx512_bf16" in reason


def test_auto_without_a_readable_cpuinfo_is_float32(tmp_path):
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert resolve_precision("auto", tmp_path / "missing")[0] == "float32"


def test_bfloat16_on_a_cpu_without_it_warns_once_in_one_line(cpuinfo):
    with pytest.warns(EmulatedBfloat16Warning) as record:
        dtype, reason = resolve_precision("bfloat16", cpuinfo(AMD_EPYC_ZEN3))
    assert dtype == "bfloat16" and "emulated" in reason
    assert len(record) == 1
    message = str(record[0].message)
    assert "\n" not in message and "emulated" in message and "slow" in message


def test_bfloat16_on_a_cpu_with_it_and_float32_never_warn(cpuinfo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bfloat16", cpuinfo(INTEL_SAPPHIRE_RAPIDS))[0] == "bfloat16"
        assert resolve_precision("float32", cpuinfo(AMD_EPYC_ZEN3))[0] == "float32"


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        resolve_precision("float16")


def test_precision_maps_onto_the_existing_levers_without_xla():
    assert options_for_precision("float32") == InferenceOptions()
    assert options_for_precision("float32", fused_graph=False) == InferenceOptions(fused_graph=False)
    bf16 = options_for_precision("bfloat16")
    assert bf16 == InferenceOptions(compute_dtype="bfloat16")  # the fused graph, projections in bfloat16
    assert not bf16.jit_compile and bf16.buckets is None
    assert options_for_precision("bfloat16", fused_graph=False) == InferenceOptions(fused_graph=False,
                                                                                    compute_dtype="bfloat16")


def test_cli_precision_flag():
    parser = build_parser()
    base = ["export", "--model", "m", "--out", "o"]
    assert parser.parse_args(base).precision == "float32"
    assert parser.parse_args(base + ["--precision", "auto"]).precision == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--precision", "float16"])


# bfloat16 keeps 8 significand bits (relative rounding 2^-9 per value); over
# one layer of this tiny encoder and the head, the served logits move by at
# most 2e-2 on unit-scale sequence outputs. The stated tolerance:
BFLOAT16_LOGITS_ATOL = 2e-2


def test_bfloat16_export_matches_float32_on_real_sentences(
        tmp_path, bert_tokenizer, task_model_builder, sst2_sentences, cpuinfo):
    model = task_model_builder(bert_tokenizer, "distilbert", "classification", "glue/sst2",
                               label_names=["negative", "positive"])
    save_model(model, tmp_path / "model", bert_tokenizer)
    fake_intel = cpuinfo(INTEL_SAPPHIRE_RAPIDS)
    outputs = {}
    for precision in ("float32", "bfloat16"):
        version_dir = export_model(tmp_path / "model", tmp_path / precision, max_sequence_length=64,
                                   warmup=False, precision=precision, cpuinfo_path=fake_intel)
        record = read_inference_config(version_dir)
        assert record["precision"] == precision and record["compute_dtype"] == precision
        assert record["options"]["jit_compile"] is False
        serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        outputs[precision] = serve(text=tf.constant(sst2_sentences))["logits"].numpy()
    assert json.loads(json.dumps(record))["options"]["label"] == "bf16"  # the fused graph
    difference = np.abs(outputs["float32"] - outputs["bfloat16"]).max()
    assert 0 < difference <= BFLOAT16_LOGITS_ATOL, difference


def test_bfloat16_rebuild_keeps_an_inherited_head_without_pre_classifier():
    """A student that inherited a mean-pooling head (no ReLU pre-classifier) rebuilds with the same head."""
    from distil_tf.export.inference_options import with_compute_dtype
    from distil_tf.models import Encoder, TaskModel

    encoder = Encoder("distilbert", vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                      intermediate_dim=32, max_sequence_length=16, mlm_head=False)
    model = TaskModel(encoder, "classification", num_classes=2, pooling="mean", pre_classifier=False)
    model(model.dummy_inputs())
    copy = with_compute_dtype(model, "bfloat16")
    assert copy.has_pre_classifier is False and copy.pooling == "mean"
    assert copy.encoder.dtype_policy.name == "bfloat16" and len(copy.weights) == len(model.weights)
    features = {"token_ids": np.array([[2, 7, 9, 3, 0]], "int32"), "padding_mask": np.array([[1, 1, 1, 1, 0]], "int32")}
    expected = model(features)["logits"].numpy()
    logits = np.asarray(copy(features)["logits"], np.float32)
    assert np.abs(logits - expected).max() <= BFLOAT16_LOGITS_ATOL
