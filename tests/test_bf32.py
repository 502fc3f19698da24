"""bf32: fp32 models whose matrix products oneDNN computes in bf16; opt-in, AMX only, restored after use."""

import logging
import sys

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_amx, requires_ipex

from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.techniques.dtypes import as_dtype, precision_name
from cpu_inference_helpers.techniques.parity import max_abs_difference
from cpu_inference_helpers.techniques.precision import fp32_matmul_in_bf16, inference_context


def _native_fp32_precision() -> str:
    matmul = getattr(torch.backends.mkldnn, "matmul", None)
    if matmul is not None and hasattr(matmul, "fp32_precision"):
        return matmul.fp32_precision
    return torch.get_float32_matmul_precision()


def _ipex_math_mode():
    ipex = sys.modules.get("intel_extension_for_pytorch")
    return ipex.get_fp32_math_mode(device="cpu") if ipex is not None else None


def test_bf32_is_a_precision_name_with_fp32_tensors():
    assert precision_name("BF32") == "bf32" and as_dtype("bf32") == torch.float32
    assert precision_name(torch.float32) == "fp32"  # a dtype never means bf32: it is asked for by name


def test_bf32_context_sets_the_math_mode_and_restores_it_even_after_an_error():
    before, ipex_before = _native_fp32_precision(), _ipex_math_mode()
    with pytest.raises(RuntimeError, match="inside"):
        with fp32_matmul_in_bf16():
            assert _native_fp32_precision() in ("bf16", "medium")
            if ipex_before is not None:
                assert _ipex_math_mode() != ipex_before
            raise RuntimeError("inside")
    assert _native_fp32_precision() == before and _ipex_math_mode() == ipex_before
    with inference_context("bf32"):
        assert _native_fp32_precision() in ("bf16", "medium") and not torch.is_grad_enabled()
    assert _native_fp32_precision() == before


def test_bf32_without_amx_runs_fp32_and_says_why(example_batch, caplog):
    model = build_random_qa_model("random-bert-tiny", seed=4)
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(model, example_batch, mode="eager", precision="bf32",
                                      capabilities=cpuinfo_capabilities("amd_zen4"))
    assert ready.record.requested_precision == "bf32" and ready.record.precision == "fp32"
    assert ready.record.fallbacks[0].step == "precision"
    assert "no AMX" in caplog.text and "no AMX" in ready.record.fallbacks[0].reason
    with torch.no_grad():
        assert max_abs_difference(model(**example_batch), ready(**example_batch)) == 0


@pytest.mark.parametrize("mode", ["eager", "jit", "compile"])
def test_bf32_calls_run_in_bf32_math_where_amx_is_reported(mode, example_batch):
    """With AMX in the capability report, every call (and the build) runs inside the bf32 context."""
    seen = []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = build_random_qa_model("random-bert-tiny", seed=5)

        def forward(self, **inputs):
            seen.append(_native_fp32_precision())
            return self.inner(**inputs)

    before = _native_fp32_precision()
    ready = prepare_for_inference(Recording(), example_batch, mode=mode, precision="bf32",
                                  capabilities=cpuinfo_capabilities("intel_sapphire_rapids"))
    assert ready.record.precision == "bf32" and "bf32" in " ".join(ready.record.applied)
    assert seen and seen[0] in ("bf16", "medium"), seen  # the build's eager reference ran in bf32 math
    if ready.record.mode == "eager":  # (inside a traced or compiled graph the Python side is not re-run)
        seen.clear()
        ready(**example_batch)
        assert seen == [seen[0]] and seen[0] in ("bf16", "medium")
    assert _native_fp32_precision() == before


@requires_amx
@pytest.mark.parametrize("mode", ["eager", "jit", pytest.param("ipex", marks=requires_ipex)])
def test_bf32_rounds_matrix_products_to_bf16_on_amx(mode):
    """On AMX, a BERT-sized Linear in bf32 carries bf16 input rounding (~1e-2), not fp32's (~1e-4)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(768, 3072).eval()
    inputs = {"input": torch.randn(384, 768)}
    exact = torch.nn.functional.linear(inputs["input"].double(), layer.weight.double(), layer.bias.double())
    fp32 = prepare_for_inference(layer, inputs, mode=mode, precision="fp32")
    bf32 = prepare_for_inference(layer, inputs, mode=mode, precision="bf32")
    assert bf32.record.precision == "bf32" and bf32.record.mode == mode
    fp32_error = (fp32(**inputs).double() - exact).abs().max().item()
    bf32_error = (bf32(**inputs).double() - exact).abs().max().item()
    assert fp32_error < 1e-3 < bf32_error < 0.1, (fp32_error, bf32_error)
