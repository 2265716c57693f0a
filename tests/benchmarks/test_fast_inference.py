"""`distil_tf.benchmarks.fast_inference`: CPU facts for the speed benchmark."""

from distil_tf.benchmarks import fast_inference


def test_cpu_info_reports_instruction_sets():
    info = fast_inference.cpu_info()
    assert info["cores"] >= 1
    assert isinstance(info["avx512_bf16"], bool)
    assert fast_inference.native_bfloat16() == (info["avx512_bf16"] or info["amx_bf16"])
