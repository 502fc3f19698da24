"""The front door: one call that turns a model into a ready inference callable.

    ready = prepare_for_inference(model, example_inputs, mode="auto", precision="bf16")
    outputs = ready(**inputs)        # the model's own ModelOutput, whatever ran underneath
    print(ready.record.summary())   # what was applied, what fell back and why

Modes compose the techniques of the classic "Efficient Inference on CPU" guide:
`eager`, `jit` (TorchScript trace + freeze), `ipex` (ipex.optimize) and `ipex+jit`, plus
TorchScript's modern successors: `compile` (torch.compile with Inductor and weight freezing) and
`export` (torch.export + AOTInductor: a package that loads in a fresh process or from C++).
Each (mode, precision) is one entry of `registry.PATHS`; `auto` (the default) is a policy over
that table (`paths.auto_policy`): the fastest entry that works on this CPU and stack, and why.
Every precision decision (precision "auto": bf16 where the CPU has native bf16 instructions, fp32
elsewhere; the precision fallbacks) is `paths.precision_policy`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers.utils import ModelOutput

from cpu_inference_helpers.infra.memory import release_freed_memory
from cpu_inference_helpers.infra.timing import interleaved_latency
from cpu_inference_helpers.modes import AUTO, MODES, ModeSpec, parse_mode
from cpu_inference_helpers.paths.precision_policy import (  # resolve_auto_precision: re-exported
    auto_precision,
    path_precision,
    request_precision,
    resolve_auto_precision,
)
from cpu_inference_helpers.record import Built, OptimizationRecord, Step
from cpu_inference_helpers.registry import (
    BuildOptions,
    BuildRequest,
    auto_attention_candidates,
    auto_contenders,
    auto_plan,
    path_for,
    refuse_unhonoured,
)
from cpu_inference_helpers.techniques.attention import attention_implementation, with_attention_implementation
from cpu_inference_helpers.techniques.capabilities import (
    CpuCapabilities,
    cached_capabilities,
    inductor_compiler_available,
)
from cpu_inference_helpers.techniques.deprecations import notes_for
from cpu_inference_helpers.techniques.dtypes import INT8, precision_name
from cpu_inference_helpers.techniques.precision import inference_context, outputs_in_fp32
from cpu_inference_helpers.techniques.tracing import positional_inputs_problem

__all__ = ["AUTO", "MODES", "InferenceModel", "OptimizationRecord", "inductor_compiler_available", "parse_mode",
           "prepare_for_inference", "resolve_auto_precision"]

logger = logging.getLogger(__name__)


class InferenceModel(torch.nn.Module):
    """A callable wrapper that runs the prepared model in its precision's context.

    It returns what the eager model returns: a traced graph's plain dict is rebuilt into the
    eager model's `ModelOutput` class (`output_class`), so callers never need to tell them apart.
    It is a `torch.nn.Module` whose other attributes (`config`, `device`, `can_generate`, ...) are the
    eager model's, so it also works as `model=` of `transformers.pipeline` (transformers 4.x logs that
    the class "InferenceModel" is not in its list of supported models; the pipeline runs regardless).
    The prepared graph and the eager model are not registered as submodules: `state_dict()` is empty.

    Threads: calls that flip a process-wide switch (bf32, traced bf16 graphs, compiled models) hold
    `precision.GLOBAL_SWITCHES_LOCK` while they run, so several prepared models may be called from
    several threads and each gives the outputs it gives alone; those calls run one at a time.
    """

    def __init__(self, module: Any, record: OptimizationRecord, eager_model: torch.nn.Module | None, traced: bool,
                 output_class: type | None = None):
        super().__init__()
        # plain attributes, not submodules: the graph holds its own (frozen) weights, the eager model is the caller's
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "_eager_model", eager_model)
        self.record = record
        self.traced = traced
        self.output_class = output_class
        self.eval()

    @property
    def precision(self) -> str:
        """What the calls run as: "fp32", "bf16" (autocast), "bf32" or "int8" (= `record.precision`)."""
        return self.record.precision

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the outputs: bfloat16 for bf16, float32 otherwise (int8 included, also int8-mixed-bf16,
        whose activations between layers are bf16)."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def forward(self, *args: Any, **inputs: torch.Tensor) -> Any:
        if args:
            raise TypeError("call a prepared model with named tensors (ready(**tokenizer_output)), not positionally: "
                            "the graph binds them by name")
        with inference_context(self.precision, traced=self.traced):
            outputs = self.module(**inputs)
        if self.precision == INT8:  # an int8-mixed-bf16 graph gives bf16; int8's outputs are fp32 (`dtype`)
            outputs = outputs_in_fp32(outputs)
        if self.output_class is not None and isinstance(outputs, Mapping) and not isinstance(outputs, ModelOutput):
            return self.output_class(**outputs)
        return outputs

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("__") or name == "_eager_model" or "_eager_model" not in self.__dict__:
                raise
        # config, device, can_generate, name_or_path, ... are the eager model's (transformers.pipeline reads them)
        eager_model = self.__dict__["_eager_model"]
        if eager_model is None:
            raise AttributeError(f"{name!r}: this model was loaded from a file (load_prepared), "
                                 "without its eager model")
        return getattr(eager_model, name)

    def __repr__(self) -> str:
        return f"InferenceModel({self.record.summary()})"


def _build_one(model: torch.nn.Module, spec: ModeSpec, attention: str | None, options: BuildOptions,
               inputs: dict[str, torch.Tensor], caps: CpuCapabilities) -> tuple[Built, torch.nn.Module]:
    """Build one concrete path; returns what was built and the eager model it was built from."""
    if attention is not None and attention_implementation(model) not in (None, attention):
        model = with_attention_implementation(model, attention).eval()
        switched = [f"{attention} attention"]
    else:
        switched = []
    spec, precision_fallbacks = path_precision(spec, model, inputs, caps)  # bf32: per path, measured
    built = path_for(spec).build(BuildRequest(model, inputs, options, caps))
    built.applied[:0] = switched
    built.fallbacks[:0] = precision_fallbacks
    return built, model


def _fastest_attention(model: torch.nn.Module, spec: ModeSpec, implementations: tuple[str, ...],
                       options: BuildOptions, inputs: dict[str, torch.Tensor], caps: CpuCapabilities
                       ) -> tuple[Built, torch.nn.Module]:
    """Build `spec` with each attention implementation and keep the fastest at the example's shape.

    A build that fell back does not compete (`_fastest`). The choice and both timings go into
    `record.choices` ("attention").
    """
    builds = {name: _build_one(model, spec, name, options, inputs, caps) for name in implementations}
    working = {name: pair for name, pair in builds.items() if pair[0].mode == spec.mode}
    if len(working) < 2:
        name = next(iter(working), implementations[0])
        return builds[name]
    fastest, measured = _fastest({name: built for name, (built, _) in working.items()}, inputs)
    chosen, eager_model = working[fastest]
    chosen.choices.insert(0, Step("attention", f"{fastest} attention, the faster of {measured}"))
    if f"{fastest} attention" not in chosen.applied:
        chosen.applied.insert(0, f"{fastest} attention")
    return chosen, eager_model


def _fastest(builds: dict[str, Built], inputs: dict[str, torch.Tensor], repeats: int = 3) -> tuple[str, str]:
    """The name of the fastest of `builds` at the example's shape, and the sentence giving every timing.

    Timed round-robin (`interleaved_latency`) on the example inputs after the builds' own warm-up.
    """
    def runner(built: Built) -> Any:
        def run(**batch: torch.Tensor) -> Any:
            with inference_context(built.precision, traced=built.traced):
                return built.model(**batch)
        return run

    timings = interleaved_latency({name: runner(built) for name, built in builds.items()}, inputs,
                                  warmup=0 if all(built.warmed_up for built in builds.values()) else 1,
                                  repeats=repeats)
    fastest = min(timings, key=lambda name: timings[name].median)
    shape = "x".join(str(size) for size in next(iter(inputs.values())).shape)
    measured = ", ".join(f"{name} {_milliseconds(timings[name].median)} ms" for name in builds)
    return fastest, f"{measured} per call on the example inputs ({shape}), measured here"


def _milliseconds(seconds: float) -> str:
    """`seconds` in milliseconds with enough digits to tell close timings apart (2 decimals under 10 ms)."""
    milliseconds = seconds * 1e3
    return f"{milliseconds:.2f}" if milliseconds < 10 else f"{milliseconds:.1f}"


def _auto_build(model: torch.nn.Module, precision: str, attention: str | None, options: BuildOptions,
                inputs: dict[str, torch.Tensor], caps: CpuCapabilities
                ) -> tuple[Built, torch.nn.Module, list[Step], list[Step]]:
    """`auto`: the first planned mode that builds without falling back (`auto_plan`), timed against the other
    planned modes `auto_contenders` names where it is one of them; with the choices and fallbacks to record."""
    choices: list[Step] = []
    fallbacks: list[Step] = []
    plan = auto_plan(capabilities=caps)
    contenders = auto_contenders([mode for mode, _ in plan], precision)
    reasons = dict(plan)

    def build(candidate: str) -> tuple[Built, torch.nn.Module]:
        spec = ModeSpec(candidate, precision)
        measured = auto_attention_candidates(candidate, precision)
        if attention is None and attention_implementation(model) == "sdpa" and measured:
            return _fastest_attention(model, spec, measured, options, inputs, caps)
        return _build_one(model, spec, attention, options, inputs, caps)

    for candidate, reason in plan:
        built, eager_model = build(candidate)
        if built.mode != candidate:
            fallbacks.append(Step("auto", f"tried {candidate} first, which fell back: "
                                          + "; ".join(str(step) for step in built.fallbacks)))
            built.fallbacks = []  # told by the step above
            continue
        rivals, untimed = {}, []
        if candidate in contenders:
            for rival in contenders[contenders.index(candidate) + 1:]:
                pair = build(rival)
                if pair[0].mode == rival:
                    rivals[rival] = pair
                else:  # the chosen path did not fall back: a choice, not a fallback of the result
                    untimed.append(Step("auto", f"{rival} was to be timed against {candidate} but fell back: "
                                                + "; ".join(str(step) for step in pair[0].fallbacks)))
        if not rivals:
            choices += [Step("auto", f"chose {candidate}: {reason}"), *untimed]
            return built, eager_model, choices, fallbacks
        builds = {candidate: (built, eager_model), **rivals}
        fastest, measured = _fastest({name: pair[0] for name, pair in builds.items()}, inputs)
        choices += [Step("auto", f"chose {fastest}, the faster of {measured} ({fastest}: {reasons[fastest]})"),
                    *untimed]
        return *builds[fastest], choices, fallbacks
    raise AssertionError("auto's plan ends with eager, which always builds")


def prepare_for_inference(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    mode: str = AUTO,
    precision: str | torch.dtype = "fp32",
    *,
    auto_kernel_selection: bool | None = None,
    dynamic_shapes: bool | None = None,
    allow_emulated_bf16: bool | None = None,
    freeze: bool | None = None,
    warmup_steps: int | None = None,
    verify: bool | None = None,
    capabilities: CpuCapabilities | None = None,
    attention: str | None = None,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None = None,
    package_path: str | Path | None = None,
    smooth_quant_alpha: float | None = None,
) -> InferenceModel:
    """Prepare `model` for CPU inference in the requested mode and precision.

    Every step that cannot be applied falls back with a logged reason, recorded as a `Step` in the
    returned model's `record.fallbacks`: IPEX missing or mismatched -> native PyTorch, tracing failure
    -> eager, bf16 without native support -> fp32. The result is warmed up (`warmup_steps` calls on
    `example_inputs`) and returns the eager model's output type.

    What it does to your model: puts it in eval mode (`model.eval()`, which it stays in) and leaves
    its weights alone. Prepare again after changing weights: `eager` runs your model's own weights (a
    later change shows); `ipex` (the copy `ipex.optimize(inplace=False)` makes), `export` (a package) and
    the int8 paths (quantized copies) do not see it; `jit` and `compile` freeze the weights as graph
    constants that may be your tensors themselves, so an in-place change shows where no pass packed or
    cast them (fp32 `jit` sees it, bf16 does not: `tests/test_optimize.py`).
    `attention=` builds a second model around the same weights; yours keeps its attention. After
    building, it runs `gc.collect()` and glibc's `malloc_trim(0)` so that set-up's temporaries go
    back to the system (`memory.release_freed_memory`). Process-wide settings (matmul precision,
    TorchScript's autocast pass, Inductor's freezing) are set only for the duration of each call
    and restored; see `InferenceModel` for threads.

    Options (`freeze`, `warmup_steps`, `verify`, `auto_kernel_selection`, `dynamic_shapes`, `calibration`,
    `smooth_quant_alpha`, `allow_emulated_bf16`, `package_path`): left at None, each path uses its default;
    given to a path that would ignore it (`registry.PATHS[...].honours`), it is refused with a ValueError before
    any work.

    Args:
        model: a transformers model (or any nn.Module taking keyword tensors).
        example_inputs: a representative batch as a dict of named tensors (a tokenizer's output);
            anything else is refused with a ValueError.
        mode: "auto" (default: the fastest that works here, see `registry.auto_plan`; `record.choices`
            says what it picked and why), "eager", "jit", "ipex", "ipex+jit", "compile" or "export".
        precision: "fp32" / torch.float32, "bf16" / torch.bfloat16 (CPU autocast mixed precision),
            "int8" / torch.qint8 (quantized Linear layers; the path per mode is in `registry`),
            "bf32" (opt-in: fp32 model and tensors, matrix products in bf16 by oneDNN, on CPUs with AMX and
            paths whose kernels honour it, measured once per path on a Linear of the model's width
            (`bf32_check`); fp32 with a logged reason elsewhere), or "auto" (bf16 where the CPU has native bf16, fp32
            elsewhere; never bf32). Anything else raises ValueError.
        auto_kernel_selection: IPEX fp32 paths: True oneDNN, False MKL; None times both on the model's
            feed-forward block on this CPU and takes the faster (`kernel_choice`), recorded in `record.choices`.
        dynamic_shapes: compile paths: dynamic shapes (True) or static (False); None measures both for
            frozen fp32 (`kernel_choice`) and compiles other cases for static shapes.
        allow_emulated_bf16: bf16 requests: run bf16 even where the CPU lacks native bf16 instructions.
        freeze: graph paths (jit, ipex+jit, compile, int8 ones but eager): freeze the weights into the graph
            (default True).
        warmup_steps: calls on `example_inputs` before the model is returned (default 2).
        verify: graph paths: check the graph against the same model run eagerly and fall back beyond
            tolerance (default True).
        capabilities: the CPU report to decide with (detected when omitted).
        attention: "eager" or "sdpa" to run a transformers model with that attention implementation
            (a second model around the same weights); None keeps it, except that `auto` builds ipex+jit in
            bf16 and int8 with both SDPA and eager attention (IPEX fuses the latter) and keeps the faster at
            the example's shape (`registry.auto_attention_candidates`; `record.choices` has both timings).
        calibration: ipex+jit:int8 (and auto:int8): batches to measure activation ranges on (static int8);
            use data you do not evaluate on. Without them ipex+jit:int8 falls back to dynamic int8.
        smooth_quant_alpha: ipex+jit:int8 (and auto:int8): SmoothQuant's migration strength in [0, 1]
            (default `quantization.SMOOTH_QUANT_ALPHA`, chosen with `qa.smoothquant_alpha`).
        package_path: export paths: write the AOTInductor package (.pt2) there, to load later in a fresh
            process (`load_prepared`) or from C++ (`deploy/`); default a temporary file removed at exit.
    """
    start = time.perf_counter()
    if not isinstance(example_inputs, Mapping):
        raise ValueError("example_inputs must be a dict of named tensors (e.g. a tokenizer's output): "
                         + positional_inputs_problem(model, list(example_inputs)))
    problem = example_inputs_problem(example_inputs)
    if problem:
        raise ValueError(problem)
    requested_mode = parse_mode(mode)
    caps = capabilities or cached_capabilities()
    choices: list[Step] = []
    requested_precision = precision
    if isinstance(precision, str) and precision.strip().lower() == AUTO:
        requested_precision = AUTO
        precision, choice = auto_precision(caps)
        choices.append(choice)
    precision = precision_name(precision)  # a clear ValueError for anything but fp32 / bf16 / bf32 / int8
    given = {"freeze": freeze, "warmup_steps": warmup_steps, "verify": verify, "calibration": calibration,
             "auto_kernel_selection": auto_kernel_selection, "dynamic_shapes": dynamic_shapes,
             "allow_emulated_bf16": allow_emulated_bf16, "package_path": package_path,
             "smooth_quant_alpha": smooth_quant_alpha}
    refuse_unhonoured(ModeSpec(requested_mode, precision), [name for name, value in given.items() if value is not None])
    if warmup_steps is not None and warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, not {warmup_steps}")
    if smooth_quant_alpha is not None and not 0.0 <= smooth_quant_alpha <= 1.0:
        raise ValueError(f"smooth_quant_alpha must lie in [0, 1], not {smooth_quant_alpha}")
    options = BuildOptions(
        freeze=True if freeze is None else freeze, warmup_steps=2 if warmup_steps is None else warmup_steps,
        verify=True if verify is None else verify, auto_kernel_selection=auto_kernel_selection,
        dynamic_shapes=dynamic_shapes, calibration=tuple(calibration) if calibration is not None else (),
        package_path=str(package_path) if package_path is not None else None, smooth_quant_alpha=smooth_quant_alpha,
    )
    runs_in, fallbacks = request_precision(precision, caps, bool(allow_emulated_bf16))
    inputs = dict(example_inputs)
    model.eval()

    if requested_mode != AUTO:
        built, eager_model = _build_one(model, ModeSpec(requested_mode, runs_in), attention, options, inputs, caps)
    else:
        built, eager_model, auto_choices, auto_fallbacks = _auto_build(model, runs_in, attention, options, inputs,
                                                                       caps)
        choices += auto_choices
        fallbacks += auto_fallbacks

    record = OptimizationRecord(
        requested_mode=requested_mode, requested_precision=str(requested_precision) if requested_precision == AUTO
        else precision, mode=built.mode, precision=built.precision, applied=list(built.applied),
        fallbacks=fallbacks + built.fallbacks, choices=choices + built.choices,
        notes=notes_for(built.mode, built.applied),
    )
    ready = InferenceModel(built.model, record, eager_model, built.traced,
                           _output_class(built, eager_model, inputs))
    if not built.warmed_up:
        for _ in range(options.warmup_steps):
            ready(**inputs)
    release_freed_memory()  # set-up's temporaries (GBs when tracing int8 at large batches) back to the system
    record.setup_seconds = time.perf_counter() - start
    logger.info("prepared model: %s", record.summary())
    return ready


#: Inputs a transformers model reads as a (batch, sequence) grid of tokens.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def example_inputs_problem(example_inputs: Mapping[str, Any]) -> str | None:
    """Why a dict of example inputs cannot be prepared for (empty, a non-tensor, a token input that is not a
    non-empty (batch, sequence) tensor), or None."""
    if not example_inputs:
        return "example_inputs is empty: pass a tokenizer's output, e.g. dict(tokenizer(text, return_tensors='pt'))"
    for name, value in example_inputs.items():
        if not isinstance(value, torch.Tensor):
            return (f"example_inputs[{name!r}] is a {type(value).__name__}, not a tensor: tokenize with "
                    "return_tensors='pt'")
        if name in TOKEN_INPUTS and (value.dim() != 2 or value.numel() == 0):
            return (f"example_inputs[{name!r}] has shape {tuple(value.shape)}: token inputs are (batch, sequence) "
                    "tensors with at least one token, e.g. tokenizer(text, return_tensors='pt')")
    return None


def _output_class(built: Built, eager_model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> type | None:
    """The eager model's `ModelOutput` class for a graph that returns a dict (traced, exported); None otherwise."""
    if not (built.traced or built.dict_outputs):
        return None
    output_type = built.eager_output_type
    if output_type is None or not issubclass(output_type, ModelOutput):
        with inference_context(built.precision):  # int8: no autocast, as for fp32
            output_type = type(eager_model(**inputs))
    return output_type if issubclass(output_type, ModelOutput) else None
