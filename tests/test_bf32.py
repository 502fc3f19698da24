"""bf32: fp32 models whose matrix products oneDNN computes in bf16; opt-in, AMX only, restored after use."""

import logging
import sys

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_amx, requires_ipex

from cpu_inference_helpers import bf32_check
from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.techniques.capabilities import cached_capabilities
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


@pytest.fixture
def bf32_kernels_honoured(monkeypatch):
    """Pretend the check found bf16 rounding on every path (as on AMX where the kernels honour bf32)."""
    def rounding(mode, in_features, out_features, *_args):
        return bf32_check.Bf32Check(mode, mode, in_features, out_features, relative_error=3e-3)

    monkeypatch.setattr(bf32_check, "check_bf32_path", rounding)


@pytest.mark.parametrize("mode", ["eager", "jit", "compile"])
def test_bf32_calls_run_in_bf32_math_where_the_path_honours_it(mode, example_batch, bf32_kernels_honoured):
    """Where AMX is reported and the path's check found rounding, every call (and the build) runs in bf32 math."""
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


def _linear_errors(mode: str, precision: str, caplog) -> tuple[float, object]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(768, 3072).eval()
    inputs = {"input": torch.randn(384, 768)}
    exact = torch.nn.functional.linear(inputs["input"].double(), layer.weight.double(), layer.bias.double())
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(layer, inputs, mode=mode, precision=precision)
    return (ready(**inputs).double() - exact).abs().max().item(), ready


@pytest.mark.skipif(cached_capabilities().has_amx, reason="here AMX may make the kernels honour bf32")
@pytest.mark.parametrize("mode", ["eager", "jit", pytest.param("ipex+jit", marks=requires_ipex)])
def test_bf32_check_finds_no_rounding_where_the_kernels_compute_fp32(mode, example_batch, caplog):
    """Told the CPU has AMX, but on a CPU without it the kernels compute fp32: the path check says so, fp32 runs."""
    bf32_check._CHECKS.clear()
    model = build_random_qa_model("random-bert-tiny", seed=4)
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(model, example_batch, mode=mode, precision="bf32",
                                      capabilities=cpuinfo_capabilities("intel_sapphire_rapids"))
    assert ready.record.requested_precision == "bf32" and ready.record.precision == "fp32"
    assert ready.record.fallbacks[0].step == "precision"
    reason = ready.record.fallbacks[0].reason
    assert "ignore the bf32 setting" in reason and f"the {mode} path" in reason and reason in caplog.text
    assert not any("bf32" in applied for applied in ready.record.applied)
    check = bf32_check.check_bf32_path(mode, *bf32_check.probe_shape(model, example_batch),
                                       cpuinfo_capabilities("intel_sapphire_rapids"))
    assert check.relative_error < bf32_check.ROUNDING_THRESHOLD and not check.rounds


def test_bf32_check_detects_rounding_kernels(monkeypatch, example_batch):
    """A Linear kernel that rounds its inputs to bf16 in bf32 math (as AMX's do) is detected, and bf32 kept."""
    bf32_check._CHECKS.clear()
    exact_linear = torch.nn.functional.linear

    def linear_like_amx(input, weight, bias=None):
        if _native_fp32_precision() in ("bf16", "medium"):
            input, weight = input.bfloat16().float(), weight.bfloat16().float()
        return exact_linear(input, weight, bias)

    monkeypatch.setattr(torch.nn.functional, "linear", linear_like_amx)
    model = build_random_qa_model("random-bert-tiny", seed=4)
    ready = prepare_for_inference(model, example_batch, mode="eager", precision="bf32",
                                  capabilities=cpuinfo_capabilities("intel_sapphire_rapids"))
    assert ready.record.precision == "bf32" and not ready.record.fell_back, ready.record.summary()
    check = bf32_check.check_bf32_path("eager", *bf32_check.probe_shape(model, example_batch),
                                       cpuinfo_capabilities("intel_sapphire_rapids"))
    assert 1e-3 < check.relative_error < 5e-2 and check.rounds and check.fallback_reason() is None
    bf32_check._CHECKS.clear()


def test_export_never_claims_bf32(example_batch):
    reason = bf32_check.bf32_fallback_reason_for_path("export", build_random_qa_model("random-bert-tiny"),
                                                      example_batch, cpuinfo_capabilities("intel_sapphire_rapids"))
    assert reason == bf32_check.EXPORT_REASON


@requires_amx
@pytest.mark.parametrize("mode", ["eager", "jit", pytest.param("ipex", marks=requires_ipex),
                                  pytest.param("ipex+jit", marks=requires_ipex), "compile"])
def test_bf32_on_amx_rounds_to_bf16_or_says_it_runs_fp32(mode, caplog):
    """On AMX, per stack and path: a BERT-sized Linear in bf32 carries bf16 rounding (~1e-2, not fp32's ~1e-5),
    or the path ran fp32 under its own name with the logged reason; never "bf32" at fp32 accuracy."""
    fp32_error, _ = _linear_errors(mode, "fp32", caplog)
    caplog.clear()
    bf32_error, bf32 = _linear_errors(mode, "bf32", caplog)
    assert fp32_error < 1e-3, fp32_error
    if bf32.record.precision == "bf32":
        assert 1e-3 < bf32_error < 0.1, (fp32_error, bf32_error)
        assert not bf32.record.fell_back
    else:
        assert bf32.record.precision == "fp32" and bf32.record.fallbacks[0].step == "precision"
        assert "ignore the bf32 setting" in bf32.record.fallbacks[0].reason
        assert bf32.record.fallbacks[0].reason in caplog.text
        assert bf32_error < 1e-3, (fp32_error, bf32_error)
