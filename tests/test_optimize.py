import logging

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_ipex, requires_native_bf16

from cpu_inference_helpers import ipex_support
from cpu_inference_helpers.optimize import MODES, parse_mode, prepare_for_inference
from cpu_inference_helpers.tracing import max_abs_difference

# bf16 keeps 8 mantissa bits: logits of the tiny model (|x| < ~5) may move by a few 1e-2.
BF16_ATOL = 0.1


@pytest.fixture(scope="module")
def eager_reference(tiny_model, example_batch):
    with torch.no_grad():
        return tiny_model(**example_batch)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_mode_matches_eager(mode, precision, tiny_model, example_batch, eager_reference):
    ready = prepare_for_inference(tiny_model, example_batch, mode=mode, precision=precision, allow_emulated_bf16=True)
    difference = max_abs_difference(eager_reference, ready(**example_batch))
    assert difference < (1e-4 if precision == "fp32" else BF16_ATOL)
    assert ready.record.precision == precision
    if ipex_support.probe_ipex().usable:
        assert ready.record.mode == mode and not ready.record.fell_back, ready.record.summary()


@pytest.mark.parametrize("mode", ["ipex", "ipex+jit"])
def test_ipex_unavailable_falls_back_to_native(monkeypatch, fresh_ipex_probe, mode, tiny_model, example_batch,
                                              eager_reference, caplog):
    monkeypatch.setenv(ipex_support.DISABLE_ENV_VAR, "1")
    ipex_support.probe_ipex(refresh=True)
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(tiny_model, example_batch, mode=mode)
    assert ready.record.mode == ("jit" if mode == "ipex+jit" else "eager")
    assert any("IPEX" in reason for reason in ready.record.fallbacks)
    assert "IPEX not applied" in caplog.text
    assert max_abs_difference(eager_reference, ready(**example_batch)) < 1e-4


def test_bf16_without_native_support_falls_back_to_fp32(tiny_model, example_batch, caplog):
    skylake = cpuinfo_capabilities("intel_skylake")
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(tiny_model, example_batch, mode="jit", precision="bf16", capabilities=skylake)
    assert ready.record.precision == "fp32" and ready.dtype == torch.float32
    assert "no native bf16" in ready.record.fallbacks[0]
    assert "no native bf16" in caplog.text


@requires_native_bf16
def test_bf16_is_kept_where_the_cpu_has_it(tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="jit", precision="bf16")
    assert ready.record.precision == "bf16" and not ready.record.fell_back


def test_untraceable_model_falls_back_in_the_front_door(example_batch):
    class Untraceable(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return {"text": "no tensors here"}

    ready = prepare_for_inference(Untraceable(), example_batch, mode="jit")
    assert ready.record.mode == "eager" and ready.record.fallbacks[0].startswith("jit:")
    assert ready(**example_batch) == {"text": "no tensors here"}


@requires_ipex
@pytest.mark.parametrize(("machine", "kernels"), [("amd_zen4", "oneDNN"), ("intel_sapphire_rapids", "MKL")])
def test_kernel_selection_follows_the_cpu_vendor(machine, kernels, tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="ipex", capabilities=cpuinfo_capabilities(machine))
    assert any(kernels in step for step in ready.record.applied), ready.record.applied


@pytest.mark.parametrize("name", ["IPEX_JIT", "jit-ipex", " Eager "])
def test_mode_names_are_normalised(name):
    assert parse_mode(name) in MODES


@pytest.mark.parametrize(("mode", "precision"), [("turbo", "fp32"), ("jit", "fp16")])
def test_unknown_mode_or_precision_is_rejected(mode, precision, tiny_model, example_batch):
    with pytest.raises(ValueError, match="choose one of"):
        prepare_for_inference(tiny_model, example_batch, mode=mode, precision=precision)
