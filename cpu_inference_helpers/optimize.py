"""The front door: one call that turns a model into a ready inference callable.

    ready = prepare_for_inference(model, example_inputs, mode="auto", precision="bf16")
    outputs = ready(**inputs)        # the model's own ModelOutput, whatever ran underneath
    print(ready.record.summary())   # what was applied, what fell back and why

Modes compose the techniques of the classic "Efficient Inference on CPU" guide:
`eager`, `jit` (TorchScript trace + freeze), `ipex` (ipex.optimize) and `ipex+jit`, plus
`compile` (torch.compile with Inductor and weight freezing), TorchScript's modern successor.
`auto` (the default) picks the fastest of these that works on this CPU and software stack, and
says why; precision "auto" takes bf16 where the CPU has native bf16 instructions, fp32 elsewhere.
The returned callable is warmed up on the example inputs and always returns what the eager
model returns (a transformers model's `ModelOutput`), also when a traced graph runs underneath.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers.utils import ModelOutput

from .attention import attention_implementation, with_attention_implementation
from .capabilities import CpuCapabilities, cached_capabilities
from .compiling import compile_model
from .dtypes import BF32, INT8, as_dtype, precision_name
from .ipex_support import load_ipex, optimize_with_ipex, probe_ipex
from .kernel_choice import choose_compile_shapes, choose_fp32_kernel
from .memory import release_freed_memory
from .precision import bf32_fallback_reason, inference_context, resolve_precision
from .quantization import prepare_int8
from .tracing import trace_model

logger = logging.getLogger(__name__)

MODES = ("eager", "jit", "ipex", "ipex+jit", "compile")
AUTO = "auto"


@dataclass
class OptimizationRecord:
    """What `prepare_for_inference` was asked for, what it applied, and what fell back."""

    requested_mode: str
    requested_precision: str
    mode: str
    precision: str
    applied: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0
    choices: list[str] = field(default_factory=list)  # what "auto" decided, and why

    @property
    def fell_back(self) -> bool:
        return bool(self.fallbacks)

    @property
    def ran_as(self) -> str:
        """What ran, as the CLIs name modes: "jit", "ipex+jit:bf16"; "auto -> ..." when auto chose it."""
        name = self.mode if self.precision == "fp32" else f"{self.mode}:{self.precision}"
        return f"auto -> {name}" if self.requested_mode == AUTO else name

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fell_back": self.fell_back}

    def summary(self) -> str:
        text = (
            f"requested {self.requested_mode}/{self.requested_precision}, "
            f"running {self.mode}/{self.precision} ({', '.join(self.applied) or 'nothing applied'}; "
            f"setup {self.setup_seconds:.2f} s)"
        )
        text += "".join(f"\n  choice: {reason}" for reason in self.choices)
        return text + "".join(f"\n  fallback: {reason}" for reason in self.fallbacks)


class InferenceModel:
    """A callable wrapper that runs the prepared model in the right precision context.

    It returns what the eager model returns: a traced graph's plain dict is rebuilt into the
    eager model's `ModelOutput` class (`output_class`), so callers never need to tell them apart.
    """

    def __init__(self, module: Any, precision: str | torch.dtype, traced: bool, record: OptimizationRecord,
                 output_class: type | None = None):
        self.module = module
        self.precision = precision_name(precision)  # what the calls run in: fp32, bf16 (autocast), bf32
        self.dtype = as_dtype(precision)
        self.traced = traced
        self.record = record
        self.output_class = output_class

    def __call__(self, **inputs: torch.Tensor) -> Any:
        with inference_context(self.precision, traced=self.traced):
            outputs = self.module(**inputs)
        if self.output_class is not None and isinstance(outputs, Mapping) and not isinstance(outputs, ModelOutput):
            return self.output_class(**outputs)
        return outputs

    def __repr__(self) -> str:
        return f"InferenceModel({self.record.summary()})"


def parse_mode(mode: str) -> str:
    """Normalise a mode name ("ipex_jit", "IPEX+JIT" ...), with a clear error for unknown ones."""
    normalised = mode.strip().lower().replace("_", "+").replace("-", "+")
    if normalised == "jit+ipex":
        normalised = "ipex+jit"
    if normalised not in (*MODES, AUTO):
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)} or {AUTO}")
    return normalised


def inductor_compiler_available() -> bool:
    """Whether torch.compile's CPU backend (Inductor) finds the C++ compiler it needs."""
    try:
        from torch._inductor import config as inductor_config

        configured = inductor_config.cpp.cxx
    except (ImportError, AttributeError):
        return False
    configured = configured if isinstance(configured, tuple) else (configured,)
    names = [name for name in configured if isinstance(name, str)]
    if None in configured:  # None: Inductor searches the usual compilers itself
        names += ["g++", "clang++", "c++"]
    return any(shutil.which(name) for name in names)


def auto_plan(capabilities: CpuCapabilities) -> list[tuple[str, str]]:
    """The modes `auto` tries, fastest first on this CPU and stack, each with the reason it is there.

    The order comes from `python -m cpu_inference_helpers.bench` (README): with IPEX, ipex.optimize +
    trace + freeze runs BERT as fused oneDNN kernels (fp32 GEMMs on MKL or oneDNN, whichever `kernel_choice`
    measures faster here); without IPEX, torch.compile's Inductor with weight freezing also packs the
    weights for oneDNN; TorchScript jit needs no compiler; eager always works.
    """
    plan = []
    ipex = probe_ipex()  # this process's IPEX, even when `capabilities` describe another CPU
    if ipex.usable:
        plan.append(("ipex+jit", "IPEX is usable: ipex.optimize + trace + freeze runs fused graphs "
                                 "(fp32: on the faster of MKL and oneDNN, measured here)"))
    if inductor_compiler_available():
        why = "the next best path" if plan else f"IPEX is not usable ({ipex.reason}); this is"
        plan.append(("compile", f"{why}: torch.compile (Inductor with weight freezing)"))
    plan.append(("jit", "TorchScript trace + freeze, which needs no C++ compiler"))
    plan.append(("eager", "no faster path applied"))
    return plan


def resolve_auto_precision(capabilities: CpuCapabilities) -> tuple[str, str]:
    """Precision "auto": bf16 where the CPU computes it natively, fp32 elsewhere; with the reason."""
    if capabilities.native_bf16:
        return "bf16", "precision auto: bf16, as this CPU has native bf16 instructions (answers may move slightly)"
    return "fp32", "precision auto: fp32, as this CPU has no native bf16 instructions (bf16 would be slower)"


def prepare_for_inference(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    mode: str = AUTO,
    precision: str | torch.dtype = "fp32",
    *,
    auto_kernel_selection: bool | None = None,
    dynamic_shapes: bool | None = None,
    allow_emulated_bf16: bool = False,
    freeze: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
    capabilities: CpuCapabilities | None = None,
    attention: str | None = None,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None = None,
) -> InferenceModel:
    """Prepare `model` for CPU inference in the requested mode and precision.

    Every step that cannot be applied falls back with a logged reason, recorded in
    the returned model's `record`: IPEX missing or mismatched -> native PyTorch,
    tracing failure -> eager, bf16 without native support -> fp32. The result is warmed up
    (`warmup_steps` calls on `example_inputs`) and returns the eager model's output type.

    Args:
        model: a transformers model (or any nn.Module taking keyword tensors).
        example_inputs: a representative batch as a dict of named tensors.
        mode: "auto" (default: the fastest that works here, see `auto_plan`; `record.choices`
            says what it picked and why), "eager", "jit", "ipex", "ipex+jit" or "compile".
        precision: "fp32" / torch.float32, "bf16" / torch.bfloat16 (CPU autocast mixed precision),
            "int8" / torch.qint8 (quantized Linear layers; the path per mode is in `quantization`),
            "bf32" (opt-in: fp32 model and tensors, matrix products in bf16 by oneDNN, on CPUs with AMX;
            fp32 with a logged reason elsewhere), or "auto" (bf16 where the CPU has native bf16, fp32
            elsewhere: use it when bf16's accuracy is acceptable; never bf32). Anything else raises ValueError.
        auto_kernel_selection: IPEX fp32 kernel choice: True oneDNN, False MKL; None times both on the
            model's feed-forward block on this CPU and takes the faster (`kernel_choice`; the vendor rule
            `prefers_onednn_fp32` on a tie or without transformer sizes), recorded in `record.choices`.
        dynamic_shapes: `compile` only: compile for dynamic shapes (True) or static ones (False); None
            measures both on the model's feed-forward block for frozen fp32 (at dynamic shapes torch 2.13's
            Inductor runs fp32 Linear layers on oneDNN with fused GELU / Add instead of MKL; `kernel_choice`)
            and takes the faster, recorded in `record.choices`; other cases compile for static shapes.
        allow_emulated_bf16: run bf16 even where the CPU lacks native bf16 instructions.
        freeze: freeze the weights into the graph: `torch.jit.freeze` for jit modes, Inductor's
            `freezing` for compile.
        warmup_steps: calls on `example_inputs` before the model is returned (tracing and compiling
            optimise on the first calls), so the caller can time it at once.
        verify: check traced and compiled models against eager and fall back beyond tolerance.
        capabilities: the CPU report to decide with (detected when omitted).
        attention: "eager" or "sdpa" to run a transformers model with that attention
            implementation (the model is rebuilt around the same weights; yours is unchanged);
            None keeps it, except that `auto` picks eager attention for IPEX + jit in bf16,
            whose fused multi-head-attention kernel replaces the eager pattern but not SDPA.
        calibration: for int8, batches to measure activation ranges on (static int8, IPEX's path);
            use data you do not evaluate on. Without them `ipex+jit` int8 falls back to dynamic int8.
    """
    start = time.perf_counter()
    mode = parse_mode(mode)
    caps = capabilities or cached_capabilities()
    choices = []
    if isinstance(precision, str) and precision.strip().lower() == AUTO:
        precision, reason = resolve_auto_precision(caps)
        choices.append(reason)
    precision = precision_name(precision)  # a clear ValueError for anything but fp32 / bf16 / bf32 / int8
    options = dict(auto_kernel_selection=auto_kernel_selection, dynamic_shapes=dynamic_shapes,
                   allow_emulated_bf16=allow_emulated_bf16,
                   freeze=freeze, warmup_steps=warmup_steps, verify=verify, capabilities=caps,
                   calibration=list(calibration) if calibration is not None else None)
    if mode != AUTO:
        ready = _prepare_mode(model, example_inputs, mode, precision, attention=attention, **options)
    else:
        tried = []
        runs_bf16 = precision != INT8 and resolve_precision(precision, caps, allow_emulated_bf16)[0] == torch.bfloat16
        for candidate, reason in auto_plan(caps):
            candidate_attention = attention
            if (attention is None and candidate == "ipex+jit" and (runs_bf16 or precision == INT8)
                    and attention_implementation(model) == "sdpa"):
                # bf16: IPEX's fused multi-head attention beats SDPA at every shape we measured (up to 1.15x);
                # int8: eager attention lets IPEX quantize the attention matmuls too (1.4x faster at seq 384);
                # fp32: SDPA is within 3% of it, and up to 1.1x faster at long sequences and batch 8.
                candidate_attention = "eager"
                reason += (f"; with eager attention, which IPEX fuses into its {precision if runs_bf16 else 'int8'} "
                           "attention kernels")
            ready = _prepare_mode(model, example_inputs, candidate, precision, attention=candidate_attention,
                                  **options)
            if ready.record.mode == candidate:
                choices.append(f"auto chose {candidate}: {reason}")
                break
            tried.append(f"auto tried {candidate} first, which fell back: {'; '.join(ready.record.fallbacks)}")
        ready.record.requested_mode = AUTO
        ready.record.fallbacks = tried + ready.record.fallbacks
    ready.record.choices = choices + ready.record.choices
    release_freed_memory()  # set-up's temporaries (GBs when tracing int8 at large batches) back to the system
    ready.record.setup_seconds = time.perf_counter() - start
    logger.info("prepared model: %s", ready.record.summary())
    return ready


def _prepare_mode(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    mode: str,
    precision: str,
    *,
    auto_kernel_selection: bool | None,
    dynamic_shapes: bool | None,
    allow_emulated_bf16: bool,
    freeze: bool,
    warmup_steps: int,
    verify: bool,
    capabilities: CpuCapabilities,
    attention: str | None,
    calibration: list[Mapping[str, torch.Tensor]] | None,
) -> InferenceModel:
    """Apply one concrete mode (not "auto"); see `prepare_for_inference`."""
    start = time.perf_counter()
    caps = capabilities
    requested = precision_name(precision)
    record = OptimizationRecord(mode, requested, mode, requested)
    if attention is not None and attention_implementation(model) not in (None, attention):
        model = with_attention_implementation(model, attention)
        record.applied.append(f"{attention} attention")
    model.eval()
    if requested == INT8:
        int8 = prepare_int8(model, example_inputs, mode, calibration, freeze=freeze, warmup_steps=warmup_steps)
        record.mode, record.applied, record.fallbacks = int8.mode, record.applied + int8.applied, int8.fallbacks
        record.precision = INT8 if int8.quantized else "fp32"
        return _ready(int8.model, model, example_inputs, torch.float32, int8.traced, int8.warmed_up, record,
                      warmup_steps, start)
    if requested == BF32:
        bf32_reason = bf32_fallback_reason(caps)
        if bf32_reason:
            logger.warning("%s", bf32_reason)
            record.fallbacks.append(bf32_reason)
            record.precision = requested = "fp32"
        else:
            record.applied.append("bf32 (oneDNN bf16 math for fp32 matrix products)")
    dtype, precision_reason = resolve_precision(requested, caps, allow_emulated_bf16)
    if precision_reason:
        logger.warning("%s", precision_reason)
        record.fallbacks.append(precision_reason)
        record.precision = precision_name(dtype)
    if dtype == torch.bfloat16:
        record.applied.append("bf16 autocast")
    runs_in: str | torch.dtype = BF32 if requested == BF32 else dtype  # bf32: fp32 tensors, bf16 matmul math

    use_ipex, use_jit = mode.startswith("ipex"), mode.endswith("jit")
    if use_ipex:
        if auto_kernel_selection is None:
            if runs_in == BF32:  # bf32 is oneDNN's: MKL's sgemm has no bf16 math mode
                auto_kernel_selection = True
            elif dtype == torch.float32 and probe_ipex().usable:  # the faster of MKL and oneDNN, timed here
                auto_kernel_selection, why = choose_fp32_kernel(model, example_inputs, caps)
                record.choices.append(why)
            else:  # bf16 Linear layers run on oneDNN either way
                auto_kernel_selection = caps.prefers_onednn_fp32
        if runs_in == BF32:
            load_ipex()  # imported first, so that the bf32 context below sets IPEX's fp32 math mode too
        with inference_context(runs_in):  # IPEX reads its fp32 math mode when it prepacks the weights
            result = optimize_with_ipex(model, dtype=dtype, auto_kernel_selection=auto_kernel_selection)
        if result.applied:
            model = result.model
            kernels = "oneDNN" if auto_kernel_selection else "default (MKL)"
            record.applied.append(
                "ipex.optimize" + (f" (fp32 kernels: {kernels})" if dtype == torch.float32 else "")
            )
        else:
            record.fallbacks.append(f"IPEX: {result.reason}")
            record.mode = "jit" if use_jit else "eager"

    traced, eager_model, optimised, eager_output_type = False, model, False, None
    if mode == "compile":
        if dynamic_shapes is None:
            dynamic_shapes = False
            if runs_in == torch.float32 and freeze:  # the faster of static (MKL) and dynamic (oneDNN) shapes
                dynamic_shapes, why = choose_compile_shapes(model, example_inputs)
                record.choices.append(why)
        compiled = compile_model(model, example_inputs, dtype=runs_in, freezing=freeze, warmup_steps=warmup_steps,
                                 verify=verify, dynamic=dynamic_shapes)
        if compiled.compiled:
            model, optimised = compiled.model, True
            record.applied.append("torch.compile (inductor" + (", freezing" if freeze else "")
                                  + (", dynamic shapes)" if dynamic_shapes else ")"))
        else:
            record.fallbacks.append(f"compile: {compiled.reason}")
            record.mode = "eager"
    if use_jit:
        trace = trace_model(model, example_inputs, dtype=runs_in, freeze=freeze, warmup_steps=warmup_steps,
                            verify=verify)
        if trace.traced:
            model, traced, optimised, eager_output_type = trace.model, True, True, trace.eager_output_type
            record.applied.append("torch.jit.trace" + (" + freeze" if trace.frozen else ""))
        else:
            record.fallbacks.append(f"jit: {trace.reason} (mode 'compile', torch.compile, is the modern alternative)")
            record.mode = "ipex" if record.mode == "ipex+jit" else "eager"
    return _ready(model, eager_model, example_inputs, runs_in, traced, optimised, record, warmup_steps, start,
                  eager_output_type)


def _ready(
    module: Any, eager_model: torch.nn.Module, example_inputs: Any, dtype: str | torch.dtype, traced: bool,
    warmed_up: bool, record: OptimizationRecord, warmup_steps: int, start: float,
    eager_output_type: type | None = None,
) -> InferenceModel:
    """Wrap the prepared module: the eager output type for traced graphs, and the warm-up not done yet.

    `eager_output_type`: what eager returned when the trace was verified; otherwise one eager call finds out.
    """
    output_class = None
    if traced and isinstance(example_inputs, Mapping):  # the graph returns a dict: rebuild the eager output type
        if eager_output_type is None:
            with inference_context(dtype):
                eager_output_type = type(eager_model(**example_inputs))
        output_class = eager_output_type if issubclass(eager_output_type, ModelOutput) else None
    ready = InferenceModel(module, dtype, traced, record, output_class)
    if not warmed_up and isinstance(example_inputs, Mapping):  # trace_model / compile_model warmed theirs up
        for _ in range(warmup_steps):
            ready(**example_inputs)
    record.setup_seconds = time.perf_counter() - start
    return ready
