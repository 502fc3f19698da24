"""oneDNN's verbose lines: parsed into kernels and ISAs, and captured from C (where Jupyter would not show them)."""

import pytest
import torch

from cpu_inference_helpers import detect_capabilities, native_output_captured, onednn_kernels
from cpu_inference_helpers.techniques.onednn_verbose import implementation_isa

ONEDNN_3 = """onednn_verbose,v1,info,oneDNN v3.7.1 (commit 8d263e693366ef8db40acc569cc7d8edf644556d)
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16::blocked:ab::f0 \
wei:bf16::blocked:ba::f0 dst:bf16::blocked:ab::f0,attr-scratchpad:user,,128x384:384x1536,18.5601
some other line
"""
OLDER = ("dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core_amx,forward_inference,src_bf16::blocked:ab:f0 "
         "wei_bf16::blocked:AB16b64a2b:f0,,,mb384ic768oc3072,0.2")


def test_verbose_lines_are_read_into_kernels_and_the_cpu_isa():
    report = onednn_kernels(ONEDNN_3)
    assert report.cpu_isa == "Intel AVX-512 with Intel DL Boost and bfloat16 support"
    [kernel] = report.kernels
    assert (kernel.primitive, kernel.implementation) == ("matmul", "brg_matmul:avx512_core_bf16")
    assert kernel.data_types == "src:bf16 wei:bf16 dst:bf16"
    assert kernel.shape == "128x384:384x1536"
    assert kernel.isa == "AVX512_BF16"


def test_the_older_format_and_amx_are_recognised():
    [kernel] = onednn_kernels(OLDER).kernels
    assert kernel.primitive == "inner_product" and kernel.isa == "AMX tiles"


@pytest.mark.parametrize(("implementation", "isa"), [
    ("brg_matmul:avx512_core_amx", "AMX tiles"),
    ("brg_matmul:avx512_core", "AVX-512 (bf16 converted to fp32: emulated)"),
    ("gemm:jit:avx2", "AVX2 (bf16 converted to fp32: emulated)"),
    ("ref:any", "reference C++ code (slow)"),
])
def test_implementation_names_map_to_instruction_sets(implementation, isa):
    assert implementation_isa(implementation) == isa


def test_nothing_parsed_says_so():
    assert "no oneDNN kernel ran" in str(onednn_kernels("hello\n"))


def test_a_bf16_linear_under_verbose_is_captured_from_c_with_the_isa_this_cpu_has():
    linear = torch.nn.Linear(64, 128).eval()
    with native_output_captured() as captured, torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            linear(torch.randn(16, 64))
    report = onednn_kernels(captured.text)
    if not torch.backends.mkldnn.is_available() or not report.kernels:
        pytest.skip("this torch ran the bf16 Linear without oneDNN")
    assert any("bf16" in kernel.data_types for kernel in report.kernels)
    capabilities = detect_capabilities()
    isas = {kernel.isa for kernel in report.kernels}
    native = {"AMX tiles", "AVX512_BF16", "AVX-512 FP16"}
    if capabilities.native_bf16:
        assert isas & native, isas
    else:
        assert not isas & native, isas
