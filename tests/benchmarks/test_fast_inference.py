"""`distil_tf.benchmarks.fast_inference`: CPU facts for the speed benchmark, read from /proc/cpuinfo.

Fed recorded `/proc/cpuinfo` excerpts of the two kinds of machine this
project runs on, so the bf16 decision is tested on both whatever the CI
machine is.
"""

from distil_tf.benchmarks import fast_inference

AMD_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2
"""
INTEL_SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8
"""
INTEL_ICE_LAKE = """model name\t: Intel(R) Xeon(R) Platinum 8373C CPU @ 2.60GHz
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni
"""


def _info(tmp_path, text):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return fast_inference.cpu_info(str(path))


def test_amd_epyc_without_bf16(tmp_path):
    info = _info(tmp_path, AMD_EPYC)
    assert info["model"] in ("AMD EPYC 7B13", fast_inference.platform.processor())
    assert (info["avx2"], info["avx512f"], info["avx512_bf16"], info["amx_bf16"]) == (True, False, False, False)
    assert fast_inference.native_bfloat16(info) is False


def test_intel_with_avx512_bf16_and_amx(tmp_path):
    info = _info(tmp_path, INTEL_SAPPHIRE_RAPIDS)
    assert (info["avx512f"], info["avx512_bf16"], info["amx_bf16"]) == (True, True, True)
    assert fast_inference.native_bfloat16(info) is True


def test_avx512_without_bf16_is_not_native(tmp_path):
    info = _info(tmp_path, INTEL_ICE_LAKE)
    assert info["avx512f"] is True and fast_inference.native_bfloat16(info) is False


def test_missing_cpuinfo_means_no_native_bf16(tmp_path):
    info = fast_inference.cpu_info(str(tmp_path / "absent"))
    assert info["cores"] >= 1 and fast_inference.native_bfloat16(info) is False
