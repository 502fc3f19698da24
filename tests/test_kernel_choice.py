"""IPEX's fp32 kernel (MKL or oneDNN) follows a measurement on this CPU, not the vendor's name."""

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_ipex

from cpu_inference_helpers import kernel_choice
from cpu_inference_helpers.kernel_choice import (
    TIE_MARGIN,
    KernelTiming,
    choose_fp32_kernel,
    decide_from_timing,
    example_tokens,
    feed_forward_sizes,
    measure_fp32_kernels,
)
from cpu_inference_helpers.optimize import prepare_for_inference

AMD, INTEL = "amd_zen4", "intel_sapphire_rapids"


def _timing(onednn_ms: float, mkl_ms: float) -> KernelTiming:
    return KernelTiming(onednn_ms, mkl_ms, 768, 3072, 384)


@pytest.mark.parametrize("machine", [AMD, INTEL])
@pytest.mark.parametrize(("onednn_ms", "mkl_ms", "expected"), [(10.0, 13.0, True), (13.0, 10.0, False)])
def test_the_faster_kernel_wins_on_either_vendor(machine, onednn_ms, mkl_ms, expected):
    use_onednn, reason = decide_from_timing(_timing(onednn_ms, mkl_ms), cpuinfo_capabilities(machine))
    assert use_onednn is expected
    assert reason.startswith(f"fp32 kernel: {'oneDNN' if expected else 'MKL'}, 1.30x as fast")
    assert "13.00 ms" in reason and "10.00 ms" in reason


@pytest.mark.parametrize(("machine", "expected"), [(AMD, True), (INTEL, False)])
def test_a_tie_or_no_measurement_keeps_the_vendor_rule(machine, expected):
    caps = cpuinfo_capabilities(machine)
    close = _timing(10.0, 10.0 * (1 + TIE_MARGIN / 2))
    for timing in (close, None):
        use_onednn, reason = decide_from_timing(timing, caps)
        assert use_onednn is expected and "vendor rule" in reason


def test_sizes_and_tokens_come_from_the_model_and_the_batch(tiny_model, example_batch):
    config = tiny_model.config
    assert feed_forward_sizes(tiny_model) == (config.hidden_size, config.intermediate_size)
    assert feed_forward_sizes(torch.nn.Linear(4, 4)) is None
    assert example_tokens(example_batch) == example_batch["input_ids"].numel()
    assert example_tokens([torch.zeros(3)]) is None


def test_a_model_without_transformer_sizes_is_not_measured(monkeypatch, example_batch):
    def fail(*args, **kwargs):
        raise AssertionError("nothing to measure for a model without feed-forward sizes")

    monkeypatch.setattr(kernel_choice, "measure_fp32_kernels", fail)
    use_onednn, reason = choose_fp32_kernel(torch.nn.Linear(4, 4), example_batch, cpuinfo_capabilities(INTEL))
    assert use_onednn is False and "not measured" in reason


@requires_ipex
@pytest.mark.parametrize("machine", [AMD, INTEL])
@pytest.mark.parametrize("onednn_faster", [True, False])
def test_ipex_fp32_runs_the_measured_kernel(monkeypatch, tiny_model, example_batch, machine, onednn_faster):
    """Unless the caller pins `auto_kernel_selection`, the measurement decides, whatever the vendor."""
    timing = _timing(10.0, 20.0) if onednn_faster else _timing(20.0, 10.0)
    monkeypatch.setattr(kernel_choice, "measure_fp32_kernels", lambda *args, **kwargs: timing)
    caps = cpuinfo_capabilities(machine)
    ready = prepare_for_inference(tiny_model, example_batch, mode="ipex+jit", capabilities=caps)
    kernels = "oneDNN" if onednn_faster else "default (MKL)"
    assert f"ipex.optimize (fp32 kernels: {kernels})" in ready.record.applied
    assert any(choice.startswith(f"fp32 kernel: {'oneDNN' if onednn_faster else 'MKL'}, 2.00x")
               for choice in ready.record.choices)
    pinned = prepare_for_inference(tiny_model, example_batch, mode="ipex+jit", auto_kernel_selection=not onednn_faster,
                                   capabilities=caps)
    assert f"ipex.optimize (fp32 kernels: {'default (MKL)' if onednn_faster else 'oneDNN'})" in pinned.record.applied
    assert not any(choice.startswith("fp32 kernel") for choice in pinned.record.choices)


@requires_ipex
def test_both_kernels_are_timed_here():
    timing = measure_fp32_kernels(64, 256, 32, torch.get_num_threads(), repeats=3)
    assert timing is not None and timing.onednn_ms > 0 and timing.mkl_ms > 0
    assert (timing.hidden_size, timing.intermediate_size, timing.tokens) == (64, 256, 32)


def test_nothing_is_measured_without_ipex(monkeypatch, fresh_ipex_probe):
    from cpu_inference_helpers import ipex_support

    monkeypatch.setenv(ipex_support.DISABLE_ENV_VAR, "1")
    assert not ipex_support.probe_ipex(refresh=True).usable
    assert measure_fp32_kernels(48, 96, 16, torch.get_num_threads(), repeats=1) is None
