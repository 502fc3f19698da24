import logging

import pytest
import torch
from conftest import cpuinfo_capabilities, ipex_bf16_usable, requires_ipex, requires_native_bf16
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.modes import MODES, parse_mode
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.paths.auto_policy import auto_contenders
from cpu_inference_helpers.registry import inductor_compiler_available
from cpu_inference_helpers.techniques import ipex_support
from cpu_inference_helpers.techniques.compiling import reads_linear_weights_each_call
from cpu_inference_helpers.techniques.parity import max_abs_difference
from cpu_inference_helpers.techniques.tracing import trace_model

# bf16 keeps 8 mantissa bits: logits of the tiny model (|x| < ~5) may move by a few 1e-2.
BF16_ATOL = 0.1


@pytest.fixture(scope="module")
def eager_reference(tiny_model, example_batch):
    with torch.no_grad():
        return tiny_model(**example_batch)


def expected_mode(mode: str, bf16: bool = False) -> str:
    """The mode each request must run as here: IPEX's only with IPEX (and, in bf16, with the AVX-512 BW/VL/DQ or
    AVX-NE-CONVERT its bf16 weight prepack needs: not on an AVX2-only CPU), compile's only with a compiler."""
    ipex_usable = ipex_bf16_usable() if bf16 else ipex_support.probe_ipex().usable
    if mode.startswith("ipex") and not ipex_usable:
        return "jit" if mode == "ipex+jit" else "eager"
    if mode in ("compile", "export") and not inductor_compiler_available():
        return "eager"
    return mode


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("precision", ["fp32", "bf16", torch.float32, torch.bfloat16])
def test_every_mode_matches_eager(mode, precision, tiny_model, example_batch, eager_reference):
    bf16 = precision in ("bf16", torch.bfloat16)
    options = {"allow_emulated_bf16": True} if bf16 else {}
    if mode == "compile":  # pinned: the shapes are chosen by a measurement cached per process (test_kernel_choice)
        options["dynamic_shapes"] = False
    ready = prepare_for_inference(tiny_model, example_batch, mode=mode, precision=precision, **options)
    outputs = ready(**example_batch)
    assert type(outputs) is QuestionAnsweringModelOutput  # one output type, traced or not
    assert max_abs_difference(eager_reference, outputs) < (BF16_ATOL if bf16 else 1e-4)
    assert ready.record.precision == ("bf16" if bf16 else "fp32")
    assert ready.record.mode == expected_mode(mode, bf16), ready.record.summary()
    assert ready.record.fell_back == (expected_mode(mode, bf16) != mode), ready.record.summary()


@pytest.mark.parametrize("mode", ["ipex", "ipex+jit"])
def test_ipex_unavailable_falls_back_to_native(monkeypatch, fresh_ipex_probe, mode, tiny_model, example_batch,
                                              eager_reference, caplog):
    monkeypatch.setenv(ipex_support.DISABLE_ENV_VAR, "1")
    ipex_support.probe_ipex(refresh=True)
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(tiny_model, example_batch, mode=mode)
    assert ready.record.mode == ("jit" if mode == "ipex+jit" else "eager")
    assert [step.step for step in ready.record.fallbacks] == ["ipex"]
    assert "disabled by the environment variable" in ready.record.fallbacks[0].reason
    assert "IPEX not applied" in caplog.text
    assert max_abs_difference(eager_reference, ready(**example_batch)) < 1e-4


def test_bf16_without_native_support_falls_back_to_fp32(tiny_model, example_batch, caplog):
    skylake = cpuinfo_capabilities("intel_skylake")
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(tiny_model, example_batch, mode="jit", precision="bf16", capabilities=skylake)
    assert ready.record.precision == "fp32" and ready.dtype == torch.float32
    assert ready.record.fallbacks[0].step == "precision" and "no native bf16" in ready.record.fallbacks[0].reason
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
    assert ready.record.mode == "eager" and [step.step for step in ready.record.fallbacks] == ["jit"]
    assert ready(**example_batch) == {"text": "no tensors here"}


@requires_ipex
@pytest.mark.parametrize(("machine", "kernels"), [("amd_zen4", "oneDNN"), ("intel_sapphire_rapids", "MKL")])
def test_kernel_selection_follows_the_cpu_vendor_without_a_measurement(
    machine, kernels, tiny_model, example_batch, monkeypatch
):
    """Where nothing could be measured, the vendor rule decides (with a measurement: tests/test_kernel_choice.py)."""
    from cpu_inference_helpers.techniques import kernel_choice

    monkeypatch.setattr(kernel_choice, "measure_fp32_kernels", lambda *args, **kwargs: None)
    ready = prepare_for_inference(tiny_model, example_batch, mode="ipex", capabilities=cpuinfo_capabilities(machine))
    assert any(kernels in step for step in ready.record.applied), ready.record.applied
    kernel = [choice for choice in ready.record.choices if choice.step == "kernel"]
    assert len(kernel) == 1 and "vendor rule" in kernel[0].reason and "not measured" in kernel[0].reason


@pytest.mark.parametrize(("name", "mode"), [("IPEX_JIT", "ipex+jit"), ("jit-ipex", "ipex+jit"), (" Eager ", "eager")])
def test_mode_names_are_normalised(name, mode):
    assert parse_mode(name) == mode


@pytest.mark.parametrize(("mode", "precision"),
                         [("turbo", "fp32"), ("jit", "fp16"), ("jit", torch.float16), ("jit", 16)])
def test_unknown_mode_or_precision_is_rejected(mode, precision, tiny_model, example_batch):
    with pytest.raises(ValueError, match="choose one of"):
        prepare_for_inference(tiny_model, example_batch, mode=mode, precision=precision)


def test_default_mode_is_auto_and_takes_the_first_path_of_its_plan_that_works(tiny_model, example_batch):
    """...or, in fp32 where both ipex+jit and compile build, the one timed faster (`auto_policy.auto_contenders`):
    on a busy machine either may win on this tiny model, and the choice must say it was timed."""
    ready = prepare_for_inference(tiny_model, example_batch, dynamic_shapes=False)
    assert ready.record.requested_mode == "auto" and ready.record.ran_as.startswith("auto -> ")
    working = [m for m in ("ipex+jit", "compile", "jit") if expected_mode(m) == m]
    if auto_contenders(working, "fp32"):
        assert ready.record.mode in auto_contenders(working, "fp32")
        assert " ms" in str(ready.record.choices[0]), ready.record.summary()  # both timings said
    else:
        assert ready.record.mode == working[0]


@pytest.mark.parametrize("verify", [True, False])
def test_traced_output_type_with_and_without_verification(verify, tiny_model, example_batch):
    """The graph returns a dict; the eager output type comes from the verification's eager reference
    (no extra eager call beyond what tracing makes), else from one eager call."""
    calls = []
    hook = tiny_model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        trace_model(tiny_model, example_batch, verify=verify, warmup_steps=1)
        tracing_calls = len(calls)
        calls.clear()
        ready = prepare_for_inference(tiny_model, example_batch, mode="jit", verify=verify, warmup_steps=1)
    finally:
        hook.remove()
    assert ready.record.mode == "jit" and type(ready(**example_batch)) is QuestionAnsweringModelOutput
    assert len(calls) == tracing_calls + (0 if verify else 1)


class _CountingCalls:
    """Wraps a callable and counts its calls on `inputs` (the graph the front door returns, for the warm-up test;
    a trace's check on a contrasting input is not a warm-up call)."""

    def __init__(self, wrapped, inputs):
        self.wrapped, self.inputs, self.calls = wrapped, inputs, 0

    def __call__(self, *args, **kwargs):
        self.calls += torch.equal(kwargs["input_ids"], self.inputs["input_ids"])
        return self.wrapped(*args, **kwargs)


@pytest.mark.parametrize("mode", ["eager", "jit", "compile"])
def test_warm_up_runs_inside_the_front_door(mode, tiny_model, example_batch, monkeypatch):
    """`warmup_steps` calls of what will run (the model, the frozen graph, the compiled model) happen before
    the model is returned, whatever the mode."""
    if mode in ("compile", "export") and not inductor_compiler_available():
        pytest.skip("torch.compile needs a C++ compiler")
    counted = []
    if mode == "eager":
        original = type(tiny_model).forward
        monkeypatch.setattr(type(tiny_model), "forward",
                            lambda self, *a, **k: counted.append(1) or original(self, *a, **k))
        ready = prepare_for_inference(tiny_model, example_batch, mode=mode, warmup_steps=3)
        assert ready.record.mode == "eager" and len(counted) == 3
        return
    # the graph itself: torch.jit.freeze's result for jit, torch.compile's for compile
    target = "freeze" if mode == "jit" else "compile"
    module = torch.jit if mode == "jit" else torch
    real = getattr(module, target)
    monkeypatch.setattr(module, target,
                        lambda *a, **k: counted.append(_CountingCalls(real(*a, **k), example_batch)) or counted[-1])
    options = {"dynamic_shapes": False} if mode == "compile" else {}
    ready = prepare_for_inference(tiny_model, example_batch, mode=mode, warmup_steps=3, verify=False, **options)
    assert ready.record.mode == mode and len(counted) == 1
    assert counted[0].calls == 3


def test_compile_honours_freeze(example_batch):
    """Frozen Linear weights are graph constants (cast, pre-packed copies): a later change to them is not seen.

    Unfrozen, the compiled graph reads the weights on every call. `torch.compile(options={"freezing": True})`
    alone does not freeze (Dynamo lifts the weights to graph inputs before Inductor reads the option).
    """
    if not inductor_compiler_available():
        pytest.skip("torch.compile needs a C++ compiler")
    for freeze in (True, False):
        model = build_random_qa_model("random-bert-tiny", seed=3)
        # static shapes, pinned: at dynamic shapes torch 2.8 runs fp32 Linear layers on the parameters themselves
        ready = prepare_for_inference(model, example_batch, mode="compile", freeze=freeze, dynamic_shapes=False)
        assert ready.record.mode == "compile" and ("freezing" in " ".join(ready.record.applied)) is freeze
        assert reads_linear_weights_each_call(ready, model, example_batch) is not freeze, f"freeze={freeze}"


def test_compile_options_alone_do_not_freeze_a_module(example_batch):
    """The trap `compile_model` avoids, kept as a test: if PyTorch fixes it, this test says so."""
    if not inductor_compiler_available():
        pytest.skip("torch.compile needs a C++ compiler")
    model = build_random_qa_model("random-bert-tiny", seed=3).eval()
    compiled = torch.compile(model, options={"freezing": True})
    assert reads_linear_weights_each_call(compiled, model, example_batch)


@pytest.mark.parametrize("function", ["trace_model", "compile_model", "optimize_with_ipex"])
def test_building_blocks_take_precision_names_and_dtypes(function, tiny_model, example_batch):
    from cpu_inference_helpers.techniques import compiling, ipex_support, tracing

    build = {"trace_model": tracing.trace_model, "compile_model": compiling.compile_model,
             "optimize_with_ipex": ipex_support.optimize_with_ipex}[function]
    args = (tiny_model,) if function == "optimize_with_ipex" else (tiny_model, example_batch)
    build(*args, dtype="fp32")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        build(*args, dtype="fp8")
    with pytest.raises(ValueError, match="unsupported precision torch.float16"):
        build(*args, dtype=torch.float16)


@pytest.mark.parametrize(("mode", "precision", "sees_it"), [
    ("eager", "fp32", True),
    pytest.param("ipex", "fp32", False, marks=requires_ipex),
    ("jit", "fp32", True),  # torch.jit.freeze inlines the tensors themselves: the constant is your bias
    ("jit", "bf16", False),  # the bf16 casts are folded at freeze time: copies
    pytest.param("export", "fp32", False, marks=pytest.mark.skipif(not inductor_compiler_available(),
                                                             reason="no C++ compiler for AOTInductor")),
])
def test_which_paths_see_a_later_change_to_your_weights(mode, precision, sees_it, example_batch):
    """README's contract: prepare again after changing weights; which paths see an in-place change."""
    model = build_random_qa_model("random-bert-tiny", seed=6)
    emulation = {"allow_emulated_bf16": True} if precision == "bf16" else {}
    ready = prepare_for_inference(model, example_batch, mode=mode, precision=precision, **emulation)
    assert ready.record.mode == mode
    with torch.no_grad():
        before = ready(**example_batch).start_logits.clone()
        model.qa_outputs.bias.add_(1.0)  # every start logit moves by 1 in the model itself
        after = ready(**example_batch).start_logits
    moved = (after - before).abs().max().item()
    assert (abs(moved - 1.0) < 0.02) if sees_it else moved < 1e-4, moved
