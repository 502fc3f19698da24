"""The browser check's verdict on stderr: a logged fallback passes only where this CPU's missing instructions
explain it (runs everywhere: no browser needed)."""

import dataclasses

from conftest import cpuinfo_capabilities
from jupyterlab_browser import NotebookReport, explained_by_cpu

NO_NATIVE_BF16 = ("bf16 requested but this CPU (AMD EPYC) has no native bf16 instructions (AVX512_BF16, AMX-BF16 "
                  "or ARM BF16): bf16 would be emulated and slower, so fp32 is used; pass allow_emulated_bf16=True "
                  "to force it")
IPEX_BF16_PREPACK = ("IPEX not applied, using the native PyTorch path: ipex.optimize failed with AssertionError: BF16 "
                     "weight prepack needs the cpu support avx_ne_convert or avx512bw, avx512vl and avx512dq, but the "
                     "desired instruction sets are not available.")
IPEX_FUSED_ATTENTION = ("failed to use PyTorch jit mode due to: RuntimeError: a TorchScript graph failed in "
                        "ipex::mha_scores_calc: RuntimeError: could not create a primitive descriptor for the matmul "
                        "primitive.. Using the eager model.")


def _avx2_only():
    # the AVX2-only AMD EPYC's /proc/cpuinfo; torch's oneDNN says bf16 is unusable there
    return dataclasses.replace(cpuinfo_capabilities("amd_zen3_avx2"), onednn_bf16_usable=False)


def _zen4():
    return dataclasses.replace(cpuinfo_capabilities("amd_zen4"), onednn_bf16_usable=True)


def test_fallbacks_that_the_cpu_explains_pass_on_that_cpu_only():
    for block in (NO_NATIVE_BF16, f"{NO_NATIVE_BF16}\n{NO_NATIVE_BF16}\n", IPEX_BF16_PREPACK,
                  f"{IPEX_BF16_PREPACK}\n{IPEX_FUSED_ATTENTION}"):
        assert explained_by_cpu(block, _avx2_only()), block
        assert not explained_by_cpu(block, _zen4()), block  # the same lines on a CPU with bf16 are a problem


def test_anything_else_in_the_block_is_a_problem():
    assert not explained_by_cpu(f"{NO_NATIVE_BF16}\nstray noise", _avx2_only())
    assert not explained_by_cpu("failed to use PyTorch jit mode due to: RuntimeError: boom. Using the eager model.",
                                _avx2_only())
    assert not explained_by_cpu("", _avx2_only())


def test_explained_blocks_are_reported_but_are_no_problem():
    report = NotebookReport("x.ipynb", 1.0, 1, 1, stderr=[], stderr_explained_by_cpu=[NO_NATIVE_BF16])
    assert report.problems() == []
    assert NotebookReport("x.ipynb", 1.0, 1, 1, stderr=["stray noise"]).problems() == ["stderr block: stray noise"]
