"""The "auto" mode and precision: what they pick per CPU and stack, and that they explain it."""

import dataclasses
import logging
import re

import pytest
import torch
from conftest import cpuinfo_capabilities, requires_ipex, requires_native_bf16

from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.record import Step
from cpu_inference_helpers.registry import auto_plan, inductor_compiler_available
from cpu_inference_helpers.techniques import ipex_support
from cpu_inference_helpers.techniques.capabilities import detect_capabilities
from cpu_inference_helpers.techniques.parity import max_abs_difference


@pytest.fixture
def no_cpp_compiler():
    """This machine's report, made while Inductor finds no C++ compiler (auto's plan reads the report)."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):  # monkeypatch can't undo config proxies
        assert not inductor_compiler_available()
        report = detect_capabilities()
        assert not report.inductor_compiler_available
        yield report


@pytest.fixture
def ipex_disabled(monkeypatch, fresh_ipex_probe):
    monkeypatch.setenv(ipex_support.DISABLE_ENV_VAR, "1")
    assert not ipex_support.probe_ipex(refresh=True).usable


@requires_ipex
@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=requires_native_bf16)])
def test_auto_picks_ipex_jit_where_ipex_works(precision, tiny_model, example_batch):
    """bf16: ipex+jit; fp32: ipex+jit or compile, whichever timed faster at the example's shape."""
    capabilities = cpuinfo_capabilities("amd_zen4")
    ready = prepare_for_inference(tiny_model, example_batch, mode="auto", precision=precision,
                                  capabilities=capabilities)
    assert ready.record.requested_mode == "auto"
    assert ready.record.choices[0].step == "auto"
    if precision == "fp32" and capabilities.inductor_compiler_available:
        reason = ready.record.choices[0].reason
        timings = dict(re.findall(r"(ipex\+jit|compile) ([0-9.]+) ms", reason))
        assert set(timings) == {"ipex+jit", "compile"}, reason
        # the mode kept is the one timed faster; printed to 2 decimals, two close timings may read the same
        assert float(timings[ready.record.mode]) <= min(float(value) for value in timings.values()), reason
        assert reason.startswith(f"chose {ready.record.mode}, the faster of ipex+jit ")
    else:
        assert ready.record.mode == "ipex+jit"
        assert ready.record.choices[0].reason.startswith("chose ipex+jit: IPEX is usable")
    # In bf16 ipex+jit is built with SDPA and with eager attention (which IPEX fuses) and the faster kept;
    # in fp32 SDPA stays, unmeasured.
    measured = [choice.reason for choice in ready.record.choices if choice.step == "attention"]
    if precision == "bf16":
        # Which one wins depends on the machine and its load; what must hold is that the record names both
        # timings, keeps the one it says is faster, and lists that attention among what was applied.
        assert len(measured) == 1 and "measured here" in measured[0], measured
        timings = dict(re.findall(r"(sdpa|eager) ([0-9.]+) ms", measured[0]))
        assert set(timings) == {"sdpa", "eager"}, measured[0]
        kept = measured[0].split(" attention,")[0]
        assert float(timings[kept]) <= min(float(value) for value in timings.values())
        assert f"{kept} attention" in ready.record.applied
    else:
        assert not measured and "eager attention" not in ready.record.applied
    assert not ready.record.fell_back
    with torch.no_grad():
        difference = max_abs_difference(tiny_model(**example_batch), ready(**example_batch))
    assert difference < (1e-4 if precision == "fp32" else 0.1)


@pytest.mark.skipif(not inductor_compiler_available(), reason="no C++ compiler for torch.compile here")
def test_auto_picks_torch_compile_without_ipex(ipex_disabled, tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="auto", dynamic_shapes=False)
    assert ready.record.mode == "compile", ready.record.summary()
    assert ready.record.choices[0].step == "auto" and "IPEX is not usable" in ready.record.choices[0].reason
    with torch.no_grad():
        assert max_abs_difference(tiny_model(**example_batch), ready(**example_batch)) < 1e-4


def test_auto_uses_jit_without_ipex_or_compiler(ipex_disabled, no_cpp_compiler, tiny_model, example_batch):
    plan = auto_plan(capabilities=no_cpp_compiler)
    assert [mode for mode, _ in plan] == ["jit", "eager"]
    ready = prepare_for_inference(tiny_model, example_batch, mode="auto", capabilities=no_cpp_compiler)
    assert ready.record.mode == "jit" and ready.record.choices == [Step("auto", "chose jit: " + plan[0][1])]


def test_auto_plans_the_compiled_modes_from_the_report_it_is_given(ipex_disabled, no_cpp_compiler):
    """The report decides, not a probe of its own: a report with a compiler plans compile, one without does not."""
    with_compiler = dataclasses.replace(no_cpp_compiler, cpp_compiler="/usr/bin/g++")
    assert [mode for mode, _ in auto_plan(capabilities=with_compiler)][:2] == ["compile", "export"]
    assert "compile" not in [mode for mode, _ in auto_plan(capabilities=no_cpp_compiler)]


def test_auto_moves_on_when_its_first_choice_falls_back(ipex_disabled, no_cpp_compiler, example_batch, caplog):
    class Untraceable(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return {"length": input_ids.shape[1]}  # no tensor out: tracing fails

    with caplog.at_level(logging.INFO, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(Untraceable(), example_batch, mode="auto", capabilities=no_cpp_compiler)
    assert ready.record.mode == "eager"
    assert ready.record.fallbacks[0].step == "auto"
    assert ready.record.fallbacks[0].reason.startswith("tried jit first, which fell back: jit:")
    assert "choice: auto: chose eager" in caplog.text
    assert ready(**example_batch) == {"length": 32}


@pytest.mark.parametrize(("machine", "expected"), [("intel_skylake", "fp32"), ("amd_zen4", "bf16")])
def test_auto_precision_takes_bf16_only_with_native_support(machine, expected, tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="eager", precision="auto",
                                  capabilities=cpuinfo_capabilities(machine))
    assert ready.record.precision == expected and not ready.record.fell_back
    assert ready.record.choices[0].step == "precision"
    assert ready.record.choices[0].reason.startswith(f"precision auto: {expected}")
    assert ready.record.requested_precision == "auto" and ready.precision == expected


def test_auto_plans_for_the_process_lifetime(ipex_disabled):
    long_running = [mode for mode, _ in auto_plan()]
    assert long_running[-2:] == ["jit", "eager"]
    if inductor_compiler_available():  # compiled paths first where Inductor can build; export after compile
        assert long_running[:2] == ["compile", "export"]
    short_lived = auto_plan(process="short-lived")
    assert [mode for mode, _ in short_lived] == ["jit", "eager"]  # nothing that compiles in every fresh process
    assert "saved export package" in short_lived[0][1]
    with pytest.raises(ValueError, match="long-running"):
        auto_plan(process="forever")


def _time_with_a_known_winner(monkeypatch, expected: set[str], faster: str,
                              seconds: tuple[float, float] = (0.010, 0.015)) -> None:
    """Make `optimize`'s timing run each candidate once (they really run) and time `faster` at `seconds[0]`
    (10 ms), the rest at `seconds[1]` (15 ms)."""
    from cpu_inference_helpers import optimize
    from cpu_inference_helpers.infra.timing import LatencyStats

    def timed(candidates, inputs, warmup, repeats):
        assert set(candidates) == expected
        for run in candidates.values():
            run(**inputs)
        return {name: LatencyStats.from_samples([seconds[0] if name == faster else seconds[1]])
                for name in candidates}

    monkeypatch.setattr(optimize, "interleaved_latency", timed)


@requires_ipex
@pytest.mark.skipif(not inductor_compiler_available(), reason="no C++ compiler for torch.compile here")
@pytest.mark.parametrize("faster", ["ipex+jit", "compile"])
def test_auto_in_fp32_keeps_the_mode_measured_faster_at_the_example_shape(faster, monkeypatch, tiny_model,
                                                                          example_batch):
    """fp32 with IPEX and a C++ compiler: ipex+jit and compile are both built, the faster here runs."""
    _time_with_a_known_winner(monkeypatch, {"ipex+jit", "compile"}, faster)
    ready = prepare_for_inference(tiny_model, example_batch, mode="auto", dynamic_shapes=False)
    assert ready.record.mode == faster and not ready.record.fell_back, ready.record.summary()
    choice = ready.record.choices[0]
    assert choice.step == "auto" and choice.reason.startswith(f"chose {faster}, the faster of ipex+jit 1")
    assert "(2x32)" in choice.reason
    with torch.no_grad():
        assert max_abs_difference(tiny_model(**example_batch), ready(**example_batch)) < 1e-4


@requires_ipex
@pytest.mark.skipif(not inductor_compiler_available(), reason="no C++ compiler for torch.compile here")
def test_auto_says_close_timings_apart(monkeypatch, tiny_model, example_batch):
    """A tiny model's paths take about 2 ms: the reason must show which was faster (to one decimal, CI once read
    "ipex+jit 2.0 ms, compile 2.0 ms" beside "chose compile")."""
    _time_with_a_known_winner(monkeypatch, {"ipex+jit", "compile"}, "compile", seconds=(0.00197, 0.00202))
    ready = prepare_for_inference(tiny_model, example_batch, mode="auto", dynamic_shapes=False)
    assert ready.record.choices[0].reason.startswith("chose compile, the faster of ipex+jit 2.02 ms, compile 1.97 ms")


@requires_ipex
@pytest.mark.skipif(not inductor_compiler_available(), reason="no C++ compiler for torch.compile here")
def test_auto_in_fp32_keeps_ipex_jit_untimed_when_compile_falls_back(monkeypatch, tiny_model, example_batch):
    """The rival that fell back is said among the choices; the result itself did not fall back."""
    def no_compile(*args, **kwargs):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(torch, "compile", no_compile)
    ready = prepare_for_inference(tiny_model, example_batch, mode="auto", dynamic_shapes=False)
    assert ready.record.mode == "ipex+jit" and not ready.record.fell_back, ready.record.summary()
    first, second = ready.record.choices[:2]
    assert first.reason.startswith("chose ipex+jit: IPEX is usable")
    assert second.step == "auto" and second.reason.startswith("compile was to be timed against ipex+jit but fell back")
    assert "no compiler today" in second.reason


@requires_ipex
@requires_native_bf16  # IPEX's bf16 weight prepack needs AVX-512 (or AVX-NE-CONVERT)
@pytest.mark.parametrize("faster", ["sdpa", "eager"])
def test_auto_keeps_the_attention_measured_faster_at_the_example_shape(faster, monkeypatch, tiny_model,
                                                                       example_batch):
    """ipex+jit in bf16 is built with both attentions; whichever times faster at this shape is what runs."""
    _time_with_a_known_winner(monkeypatch, {"sdpa", "eager"}, faster)
    ready = prepare_for_inference(tiny_model, example_batch, mode="auto", precision="bf16",
                                  capabilities=cpuinfo_capabilities("amd_zen4"))
    assert ready.record.mode == "ipex+jit"
    choice = next(choice.reason for choice in ready.record.choices if choice.step == "attention")
    assert choice.startswith(f"{faster} attention, the faster of sdpa 1") and "(2x32)" in choice
    assert f"{faster} attention" in ready.record.applied
    other = "eager" if faster == "sdpa" else "sdpa"
    assert f"{other} attention" not in ready.record.applied
    with torch.no_grad():
        assert max_abs_difference(tiny_model(**example_batch), ready(**example_batch)) < 0.1
