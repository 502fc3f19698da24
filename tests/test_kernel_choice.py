"""IPEX's fp32 kernel (MKL or oneDNN) and torch.compile's fp32 shapes follow a measurement on this CPU."""

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_ipex

from cpu_inference_helpers.optimize import inductor_compiler_available, prepare_for_inference
from cpu_inference_helpers.techniques import kernel_choice
from cpu_inference_helpers.techniques.kernel_choice import (
    TIE_MARGIN,
    CompileShapeTiming,
    KernelTiming,
    choose_compile_shapes,
    choose_fp32_kernel,
    decide_compile_shapes,
    decide_from_timing,
    example_tokens,
    feed_forward_sizes,
    measure_compile_shapes,
    measure_fp32_kernels,
)

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
    assert any(choice.step == "kernel" and choice.reason.startswith(
        f"fp32 kernel: {'oneDNN' if onednn_faster else 'MKL'}, 2.00x") for choice in ready.record.choices)
    pinned = prepare_for_inference(tiny_model, example_batch, mode="ipex+jit", auto_kernel_selection=not onednn_faster,
                                   capabilities=caps)
    assert f"ipex.optimize (fp32 kernels: {'default (MKL)' if onednn_faster else 'oneDNN'})" in pinned.record.applied
    assert not any(choice.step == "kernel" for choice in pinned.record.choices)


@requires_ipex
def test_both_kernels_are_timed_here():
    timing = measure_fp32_kernels(64, 256, 32, torch.get_num_threads(), repeats=3)
    assert timing is not None and timing.onednn_ms > 0 and timing.mkl_ms > 0
    assert (timing.hidden_size, timing.intermediate_size, timing.tokens) == (64, 256, 32)


def test_nothing_is_measured_without_ipex(monkeypatch, fresh_ipex_probe):
    from cpu_inference_helpers.techniques import ipex_support

    monkeypatch.setenv(ipex_support.DISABLE_ENV_VAR, "1")
    assert not ipex_support.probe_ipex(refresh=True).usable
    assert measure_fp32_kernels(48, 96, 16, torch.get_num_threads(), repeats=1) is None


def _compile_timing(static_ms: float, dynamic_ms: float) -> CompileShapeTiming:
    return CompileShapeTiming(static_ms, dynamic_ms, 768, 3072, 384)


@pytest.mark.parametrize(("static_ms", "dynamic_ms", "expected"), [(13.0, 10.0, True), (10.0, 13.0, False)])
def test_compile_takes_the_faster_shapes(static_ms, dynamic_ms, expected):
    dynamic, reason = decide_compile_shapes(_compile_timing(static_ms, dynamic_ms))
    assert dynamic is expected
    assert reason.startswith(f"compile fp32: {'dynamic' if expected else 'static'} shapes, 1.30x as fast")
    assert "13.00 ms" in reason and "10.00 ms" in reason


def test_compile_keeps_static_shapes_on_a_tie_or_without_a_measurement():
    close = _compile_timing(10.0 * (1 + TIE_MARGIN / 2), 10.0)
    for timing in (close, None):
        dynamic, reason = decide_compile_shapes(timing)
        assert dynamic is False and reason.startswith("compile fp32: static shapes")


def test_compile_does_not_measure_a_model_without_transformer_sizes(monkeypatch, example_batch):
    def fail(*args, **kwargs):
        raise AssertionError("nothing to measure for a model without feed-forward sizes")

    monkeypatch.setattr(kernel_choice, "measure_compile_shapes", fail)
    dynamic, reason = choose_compile_shapes(torch.nn.Linear(4, 4), example_batch)
    assert dynamic is False and "not measured" in reason


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs a C++ compiler")
@pytest.mark.parametrize("dynamic_faster", [True, False])
def test_compile_fp32_runs_the_measured_shapes(monkeypatch, tiny_model, example_batch, dynamic_faster):
    """Unless the caller pins `dynamic_shapes`, fp32 compiles at the measured faster shapes; bf16 is not measured."""
    timing = _compile_timing(20.0, 10.0) if dynamic_faster else _compile_timing(10.0, 20.0)
    measured = []
    monkeypatch.setattr(kernel_choice, "measure_compile_shapes", lambda *args, **kwargs: measured.append(1) or timing)
    ready = prepare_for_inference(tiny_model, example_batch, mode="compile")
    assert ready.record.mode == "compile", ready.record.fallbacks
    assert ("dynamic shapes" in " ".join(ready.record.applied)) is dynamic_faster
    assert any(choice.step == "shapes" and choice.reason.startswith(
        f"compile fp32: {'dynamic' if dynamic_faster else 'static'} shapes, 2.00x") for choice in ready.record.choices)
    pinned = prepare_for_inference(tiny_model, example_batch, mode="compile", dynamic_shapes=not dynamic_faster)
    assert ("dynamic shapes" in " ".join(pinned.record.applied)) is not dynamic_faster
    assert not any(choice.step == "shapes" for choice in pinned.record.choices)
    bf16 = prepare_for_inference(tiny_model, example_batch, mode="compile", precision="bf16", allow_emulated_bf16=True)
    assert not any(choice.step == "shapes" for choice in bf16.record.choices)
    assert "dynamic shapes" not in " ".join(bf16.record.applied) and len(measured) == 1


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs a C++ compiler")
def test_both_compile_shapes_are_timed_here():
    timing = measure_compile_shapes(64, 256, 32, torch.get_num_threads(), repeats=3)
    assert timing is not None and timing.static_ms > 0 and timing.dynamic_ms > 0
    assert (timing.hidden_size, timing.intermediate_size, timing.tokens) == (64, 256, 32)
