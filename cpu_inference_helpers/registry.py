"""Every path in one table: a builder per (mode, precision), the options each honours, its fallback, and
the policy `auto` applies over the table.

    PATHS[ModeSpec("ipex+jit", "bf16")].build(request) -> Built

A builder takes a `BuildRequest` (the model in eval mode, a dict of example tensors, the options,
the CPU report) and returns a `Built`. When its technique cannot be applied it builds the next simpler
path of the table and prepends a fallback `Step` saying why:

    ipex+jit -> jit (IPEX unusable) or ipex (trace failed);  ipex -> eager;  jit -> eager;  compile -> eager
    export -> eager (export refused the model, or AOTInductor failed)
    ipex+jit:int8 -> jit:int8;  ipex:int8 -> eager:int8;  compile:int8 -> eager:int8;  jit:int8 -> eager:int8;
    export:int8 -> eager:int8;  eager:int8 -> eager fp32 (no quantized engine)

Each path declares the options it honours (`PathBuilder.honours`); the front door refuses an option given
to a path that would ignore it (`refuse_unhonoured`), before any work. Precision fallbacks (bf16 without
native bf16; bf32 without AMX, on export, or on a path whose kernels ignore it, `bf32_check`) happen before
the table is consulted: the front door then builds the fp32 entry of the same mode.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.modes import AUTO, MODES, ModeSpec
from cpu_inference_helpers.record import Built, Step
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities, inductor_compiler_available
from cpu_inference_helpers.techniques.compiling import compile_model
from cpu_inference_helpers.techniques.dtypes import BF32, INT8, PRECISION_DTYPES
from cpu_inference_helpers.techniques.exporting import export_model
from cpu_inference_helpers.techniques.ipex_support import load_ipex, optimize_with_ipex, probe_ipex
from cpu_inference_helpers.techniques.kernel_choice import choose_compile_shapes, choose_fp32_kernel
from cpu_inference_helpers.techniques.parity import build_verified_or_eager
from cpu_inference_helpers.techniques.precision import inference_context
from cpu_inference_helpers.techniques.quantization import (
    SMOOTH_QUANT_ALPHA,
    calibrated_ipex_int8,
    quantize_dynamic_linear,
    quantize_with_torchao,
)
from cpu_inference_helpers.techniques.tracing import trace_model

logger = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor]

#: The options of `prepare_for_inference` that paths honour or refuse, with what they mean.
OPTIONS: dict[str, str] = {
    "freeze": "freeze the weights into the graph (torch.jit.freeze; Inductor's freezing)",
    "warmup_steps": "calls on the example inputs before the model is returned",
    "verify": "check the built graph against the same model run eagerly, falling back beyond tolerance",
    "auto_kernel_selection": "IPEX's fp32 Linear kernels: True oneDNN, False MKL (fp32 IPEX paths only)",
    "dynamic_shapes": "dynamic shapes: torch.compile's (compile paths in fp32, bf16, bf32); export's batch and "
                      "sequence dimensions (export paths; default dynamic)",
    "package_path": "where the export paths write their AOTInductor package (.pt2; default: a temporary file)",
    "calibration": "batches for static int8's activation ranges (ipex+jit:int8 only)",
    "allow_emulated_bf16": "run bf16 where the CPU has no native bf16 (bf16 requests only)",
}
FLOAT_PRECISIONS = (*PRECISION_DTYPES, BF32)


@dataclass(frozen=True)
class BuildOptions:
    """The options a builder reads; what the caller did not give takes these defaults."""

    freeze: bool = True
    warmup_steps: int = 2
    verify: bool = True
    auto_kernel_selection: bool | None = None  # None: measured (`kernel_choice`)
    dynamic_shapes: bool | None = None  # None: measured for frozen fp32, static otherwise
    calibration: tuple[Batch, ...] = ()
    package_path: str | None = None  # export: the .pt2 package to write (None: a temporary file)


@dataclass(frozen=True)
class BuildRequest:
    """What a builder builds from: the model (in eval mode), example tensors by name, options, the CPU."""

    model: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    options: BuildOptions
    capabilities: CpuCapabilities


@dataclass(frozen=True)
class PathBuilder:
    """One entry of the table: what it builds, how, and which options it honours."""

    spec: ModeSpec
    build: Callable[[BuildRequest], Built]
    honours: frozenset[str]
    summary: str


def _with_fallback(built: Built, *steps: Step) -> Built:
    """`built` with `steps` (what failed before it) in front of its own fallbacks."""
    built.fallbacks[:0] = steps
    return built


def _precision_applied(precision: str) -> list[str]:
    if precision == "bf16":
        return ["bf16 autocast"]
    if precision == BF32:
        return ["bf32 (oneDNN bf16 math for fp32 matrix products)"]
    return []


# --- floating point: fp32, bf16 (autocast), bf32 (fp32 tensors, bf16 matrix products) -------------------

def _eager(precision: str) -> Callable[[BuildRequest], Built]:
    def build(request: BuildRequest) -> Built:
        return Built(request.model, "eager", precision, applied=_precision_applied(precision))
    return build


def _jit(precision: str) -> Callable[[BuildRequest], Built]:
    def build(request: BuildRequest) -> Built:
        return _trace(request.model, request, precision, on_failure=_eager(precision)(request))
    return build


def _trace(model: Any, request: BuildRequest, precision: str, on_failure: Built) -> Built:
    """Trace `model` (eager or IPEX-optimised); `on_failure` (with the jit step's reason) when tracing fails."""
    options = request.options
    trace = trace_model(model, request.inputs, dtype=precision, freeze=options.freeze,
                        warmup_steps=options.warmup_steps, verify=options.verify)
    if trace.fell_back:
        hint = " (mode 'compile', torch.compile, is the modern alternative)"
        return _with_fallback(on_failure, Step("jit", trace.reason + hint))
    trace.applied[:0] = on_failure.applied  # the precision's, and ipex.optimize's when it ran first
    if on_failure.mode == "ipex":
        trace.mode = "ipex+jit"
    trace.choices[:0] = on_failure.choices
    return trace


def _ipex_optimised(request: BuildRequest, precision: str) -> Built:
    """ipex.optimize in `precision`, with the fp32 kernel chosen (measured) unless the caller pinned it."""
    choices = []
    onednn = request.options.auto_kernel_selection
    if onednn is None:
        if precision == BF32:  # bf32 is oneDNN's: MKL's sgemm has no bf16 math mode
            onednn = True
        elif precision == "fp32" and probe_ipex().usable:  # the faster of MKL and oneDNN, timed here
            onednn, why = choose_fp32_kernel(request.model, request.inputs, request.capabilities)
            choices.append(Step("kernel", why))
        else:  # bf16 Linear layers run on oneDNN either way
            onednn = request.capabilities.prefers_onednn_fp32
    if precision == BF32:
        load_ipex()  # imported first, so that the bf32 context below sets IPEX's fp32 math mode too
    with inference_context(precision):  # IPEX reads its fp32 math mode when it prepacks the weights
        built = optimize_with_ipex(request.model, dtype=precision, auto_kernel_selection=onednn)
    built.applied[:0] = _precision_applied(precision)
    built.choices[:0] = choices
    return built


def _ipex(precision: str) -> Callable[[BuildRequest], Built]:
    def build(request: BuildRequest) -> Built:
        optimised = _ipex_optimised(request, precision)
        if optimised.fell_back:
            return _with_fallback(_eager(precision)(request), *optimised.fallbacks)
        return optimised
    return build


def _ipex_jit(precision: str) -> Callable[[BuildRequest], Built]:
    def build(request: BuildRequest) -> Built:
        optimised = _ipex_optimised(request, precision)
        if optimised.fell_back:
            return _with_fallback(_jit(precision)(request), *optimised.fallbacks)
        return _trace(optimised.model, request, precision, on_failure=optimised)
    return build


def _compile(precision: str) -> Callable[[BuildRequest], Built]:
    def build(request: BuildRequest) -> Built:
        options, choices = request.options, []
        dynamic = options.dynamic_shapes
        if dynamic is None:
            dynamic = False
            if precision == "fp32" and options.freeze:  # the faster of static (MKL) and dynamic (oneDNN) shapes
                dynamic, why = choose_compile_shapes(request.model, request.inputs)
                choices.append(Step("shapes", why))
        compiled = compile_model(request.model, request.inputs, dtype=precision, freezing=options.freeze,
                                 warmup_steps=options.warmup_steps, verify=options.verify, dynamic=dynamic)
        if compiled.fell_back:
            return _with_fallback(_eager(precision)(request), *compiled.fallbacks)
        compiled.applied[:0] = _precision_applied(precision)
        compiled.choices[:0] = choices
        return compiled
    return build


def _exported(model: torch.nn.Module, request: BuildRequest, precision: str) -> Built:
    """`export_model` with the request's options (dynamic batch and sequence unless dynamic_shapes=False)."""
    options = request.options
    return export_model(model, request.inputs, dtype=precision, freeze=options.freeze,
                        warmup_steps=options.warmup_steps, verify=options.verify,
                        dynamic=True if options.dynamic_shapes is None else options.dynamic_shapes,
                        package_path=options.package_path)


def _export(precision: str) -> Callable[[BuildRequest], Built]:
    def build(request: BuildRequest) -> Built:
        exported = _exported(request.model, request, precision)
        if exported.fell_back:
            return _with_fallback(_eager(precision)(request), *exported.fallbacks)
        exported.applied[:0] = _precision_applied(precision)
        return exported
    return build


# --- int8 --------------------------------------------------------------------------------------------------

def _int8_fallback(failed: str, to: Callable[[BuildRequest], Built], request: BuildRequest, reason: str) -> Built:
    logger.warning("int8 path %s not applied: %s", failed, reason)
    return _with_fallback(to(request), Step(failed, reason))


def _eager_int8(request: BuildRequest) -> Built:
    try:
        quantized = quantize_dynamic_linear(request.model)
    except Exception as error:  # noqa: BLE001 - e.g. no quantized engine for this CPU
        reason = f"dynamic quantization failed ({error_summary(error)}); fp32 runs"
        logger.warning("int8 not applied, running fp32: %s", reason)
        return Built(request.model, "eager", "fp32", fallbacks=[Step("eager:int8", reason)])
    return Built(quantized, "eager", INT8, applied=["dynamic int8 Linear (torch.ao quantize_dynamic)"])


def _jit_int8(request: BuildRequest) -> Built:
    dynamic = _eager_int8(request)
    if dynamic.precision != INT8:
        return dynamic
    options = request.options
    # The traced graph runs the same dynamic int8 kernels as its eager twin: checked at fp32's tolerance.
    trace = trace_model(dynamic.model, request.inputs, dtype="fp32", freeze=options.freeze,
                        warmup_steps=options.warmup_steps, verify=options.verify)
    if trace.fell_back:
        return _int8_fallback("jit:int8", lambda _: dynamic, request, f"tracing the int8 model failed: {trace.reason}")
    trace.precision = INT8
    trace.applied[:0] = dynamic.applied
    return trace


def _ipex_int8(request: BuildRequest) -> Built:
    return _int8_fallback("ipex:int8", _eager_int8, request,
                          "IPEX's int8 kernels run only inside its TorchScript graph: use mode ipex+jit")


def _ipex_jit_int8(request: BuildRequest) -> Built:
    options, calibration = request.options, list(request.options.calibration)
    if not probe_ipex().usable:
        return _int8_fallback("ipex+jit:int8", _jit_int8, request, f"IPEX is not usable here ({probe_ipex().reason})")
    if not calibration:
        return _int8_fallback("ipex+jit:int8", _jit_int8, request,
                              "static int8 needs calibration batches (calibration=...), none were given")
    try:
        calibrated = calibrated_ipex_int8(request.model, request.inputs, calibration)
    except Exception as error:  # noqa: BLE001 - IPEX's quantizer failing on this model
        return _int8_fallback("ipex+jit:int8", _jit_int8, request, error_summary(error))

    def trace_and_freeze(inputs: dict[str, torch.Tensor]) -> Any:
        traced = torch.jit.trace(calibrated, example_kwarg_inputs=inputs, strict=False, check_trace=False)
        return torch.jit.freeze(traced) if options.freeze else traced

    # IPEX's int8 fusion passes run on the first calls (the warm-up). No check against eager: the fused int8
    # kernels round differently from the calibrated model run eagerly (quantize / dequantize around fp32
    # kernels), by 3.2 logits on a logit scale of 7.4 for minilm-squad at seq 384 (2026-11-30), so no tolerance
    # separates a correct graph from a wrong one there; the run_qa comparison judges its answers instead.
    built = build_verified_or_eager(calibrated, request.inputs, trace_and_freeze, mode="ipex+jit", dtype=INT8,
                                    what="the traced int8 model's", warmup_steps=options.warmup_steps,
                                    verify=False, traced=True, context=_warnings_ignored)
    if built.fell_back:
        return _int8_fallback("ipex+jit:int8", _jit_int8, request, f"tracing IPEX's int8 model failed: {built.reason}")
    built.frozen = options.freeze
    built.applied = [f"IPEX static int8 (SmoothQuant alpha {SMOOTH_QUANT_ALPHA}, {len(calibration)} calibration "
                     "batches) + trace" + (" + freeze" if options.freeze else "")]
    return built


@contextlib.contextmanager
def _warnings_ignored() -> Iterator[None]:
    """Tracing IPEX's int8 model warns about every quantization scale it records as a constant (as it should)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _torchao_int8(path: str, request: BuildRequest, build: Callable[[torch.nn.Module], Built], failure: str,
                  missing_hint: str = "") -> Built:
    """torchao's int8 quantization, then `build` on the quantized model; eager:int8 with the reason otherwise."""
    if importlib.util.find_spec("torchao") is None:
        missing = "torchao is not installed (pip install torchao)" + missing_hint
        return _int8_fallback(path, _eager_int8, request, missing)
    try:
        quantized = quantize_with_torchao(request.model)
    except Exception as error:  # noqa: BLE001
        return _int8_fallback(path, _eager_int8, request, f"torchao's quantize_ failed: {error_summary(error)}")
    built = build(quantized)
    if built.fell_back:
        return _int8_fallback(path, _eager_int8, request, f"{failure}: {built.reason}")
    return built


def _compile_int8(request: BuildRequest) -> Built:
    options = request.options

    def compile_quantized(quantized: torch.nn.Module) -> Built:
        # Checked against the torchao model run eagerly: the same int8 math, before Inductor fuses it.
        compiled = compile_model(quantized, request.inputs, dtype=INT8, freezing=options.freeze,
                                 warmup_steps=options.warmup_steps, verify=options.verify)
        compiled.applied = ["torchao int8 dynamic activations + int8 weights, torch.compile"
                            + (" (freezing)" if options.freeze else "")]
        return compiled

    return _torchao_int8("compile:int8", request, compile_quantized, "torch.compile of the torchao model failed")


def _export_int8(request: BuildRequest) -> Built:
    def export_quantized(quantized: torch.nn.Module) -> Built:
        # Checked against the torchao model run eagerly: the same int8 math, before AOTInductor fuses it.
        exported = _exported(quantized, request, INT8)
        exported.applied[:0] = ["torchao int8 dynamic activations + int8 weights"]
        return exported

    return _torchao_int8("export:int8", request, export_quantized, "exporting the torchao model failed",
                         "; PyTorch's dynamic int8 Linear holds TorchScript objects that torch.export cannot take")


# --- the table -----------------------------------------------------------------------------------------------

_BASIC = frozenset({"warmup_steps"})
_GRAPH = frozenset({"freeze", "warmup_steps", "verify"})
_EXPORT = _GRAPH | {"dynamic_shapes", "package_path"}


def _table() -> dict[ModeSpec, PathBuilder]:
    paths: list[PathBuilder] = []
    for precision in FLOAT_PRECISIONS:
        kernel = frozenset({"auto_kernel_selection"}) if precision == "fp32" else frozenset()
        emulated = frozenset({"allow_emulated_bf16"}) if precision == "bf16" else frozenset()
        paths += [
            PathBuilder(ModeSpec("eager", precision), _eager(precision), _BASIC | emulated,
                        "the model as it is"),
            PathBuilder(ModeSpec("jit", precision), _jit(precision), _GRAPH | emulated,
                        "TorchScript trace + freeze"),
            PathBuilder(ModeSpec("ipex", precision), _ipex(precision), _BASIC | kernel | emulated,
                        "ipex.optimize"),
            PathBuilder(ModeSpec("ipex+jit", precision), _ipex_jit(precision), _GRAPH | kernel | emulated,
                        "ipex.optimize + trace + freeze (IPEX's fused graph)"),
            PathBuilder(ModeSpec("compile", precision), _compile(precision),
                        _GRAPH | {"dynamic_shapes"} | emulated, "torch.compile (Inductor, freezing)"),
            PathBuilder(ModeSpec("export", precision), _export(precision), _EXPORT | emulated,
                        "torch.export + AOTInductor package (loads in Python or C++)"
                        + (" (the front door builds bf32 requests in fp32: bf32 cannot be compiled in)"
                           if precision == BF32 else "")),
        ]
    paths += [
        PathBuilder(ModeSpec("eager", INT8), _eager_int8, _BASIC, "PyTorch's dynamic int8 Linear"),
        PathBuilder(ModeSpec("jit", INT8), _jit_int8, _GRAPH, "dynamic int8 Linear, traced + frozen"),
        PathBuilder(ModeSpec("ipex", INT8), _ipex_int8, _BASIC, "none of its own: eager:int8"),
        PathBuilder(ModeSpec("ipex+jit", INT8), _ipex_jit_int8, frozenset({"freeze", "warmup_steps", "calibration"}),
                    "IPEX static int8 with SmoothQuant, traced + frozen (no eager reference to verify against)"),
        PathBuilder(ModeSpec("compile", INT8), _compile_int8, _GRAPH,
                    "torchao int8 dynamic activations + int8 weights, torch.compile"),
        PathBuilder(ModeSpec("export", INT8), _export_int8, _EXPORT,
                    "torchao int8 dynamic activations + int8 weights, torch.export + AOTInductor package"),
    ]
    return {path.spec: path for path in paths}


#: Every concrete path, keyed by `ModeSpec(mode, precision)`.
PATHS: dict[ModeSpec, PathBuilder] = _table()


def path_for(spec: ModeSpec) -> PathBuilder:
    """The table's entry for a concrete spec; a ValueError for "auto" or an unknown pair."""
    if spec not in PATHS:
        raise ValueError(f"no path for {spec.name!r}: modes {', '.join(MODES)} in precisions "
                         f"{', '.join(sorted({s.precision for s in PATHS}))}")
    return PATHS[spec]


def honoured_options(spec: ModeSpec) -> frozenset[str]:
    """The options the path of `spec` honours; for mode "auto", those of any mode at its precision.

    (Any mode, not only the candidates usable in this process: code written for a machine with IPEX, e.g.
    `precision="int8", calibration=batches`, runs unchanged where auto picks another path.)
    """
    if spec.mode == AUTO:
        return frozenset().union(*(path_for(ModeSpec(mode, spec.precision)).honours for mode in MODES))
    return path_for(spec).honours


def refuse_unhonoured(spec: ModeSpec, given: Iterable[str]) -> None:
    """Raise ValueError naming every option in `given` that the path of `spec` would ignore, and who honours it."""
    ignored = sorted(set(given) - honoured_options(spec))
    if not ignored:
        return
    lines = []
    for name in ignored:
        honouring = [path.spec.name for path in PATHS.values() if name in path.honours]
        lines.append(f"{name} ({OPTIONS.get(name, '?')}) is honoured by {', '.join(honouring) or 'no path'}")
    raise ValueError(f"{spec.name} would ignore the option(s) given: " + "; ".join(lines))


# --- auto: a policy over the table -----------------------------------------------------------------------------

#: The process lifetimes `auto_plan` plans for.
LONG_RUNNING, SHORT_LIVED = "long-running", "short-lived"


def auto_plan(process: str = LONG_RUNNING) -> list[tuple[str, str]]:
    """The modes `auto` tries, fastest first, each with the reason it is there.

    A long-running process (the default, what `prepare_for_inference(mode="auto")` plans for) pays set-up
    once and then wants the fastest calls. The order comes from `python -m cpu_inference_helpers.bench`
    (docs/): with IPEX, ipex.optimize + trace + freeze runs BERT as fused oneDNN kernels (fp32 GEMMs on MKL or
    oneDNN, whichever `kernel_choice` measures faster here); without IPEX, torch.compile's Inductor with
    weight freezing also packs the weights for oneDNN; torch.export + AOTInductor builds the same kernels
    ahead of time (tried when compile fell back); TorchScript jit needs no compiler; eager always works.

    A short-lived process (a batch job, a serverless call) pays set-up every time: compiling (compile,
    export) costs it tens of seconds (`python -m cpu_inference_helpers.bench.cold_start`, docs/deployment.md),
    so the plan there is jit then eager, and the advice is to build a package once (mode "export",
    `package_path=`) and load it in each process with `load_prepared`.
    """
    if process not in (LONG_RUNNING, SHORT_LIVED):
        raise ValueError(f"process must be {LONG_RUNNING!r} or {SHORT_LIVED!r}, not {process!r}")
    if process == SHORT_LIVED:
        return [("jit", "a short-lived process pays set-up each time: trace + freeze prepares in about a second, "
                        "where compiling takes tens of seconds (better still: load a saved export package)"),
                ("eager", "no faster path applied")]
    plan = []
    ipex = probe_ipex()
    if ipex.usable:
        plan.append(("ipex+jit", "IPEX is usable: ipex.optimize + trace + freeze runs fused graphs "
                                 "(fp32: on the faster of MKL and oneDNN, measured here)"))
    if inductor_compiler_available():
        why = "the next best path" if plan else f"IPEX is not usable ({ipex.reason}); this is"
        plan.append(("compile", f"{why}: torch.compile (Inductor with weight freezing)"))
        plan.append(("export", "torch.export + AOTInductor: Inductor's kernels compiled ahead of time into a package"))
    plan.append(("jit", "TorchScript trace + freeze, which needs no C++ compiler"))
    plan.append(("eager", "no faster path applied"))
    return plan


def auto_attention_candidates(mode: str, precision: str) -> tuple[str, ...]:
    """The attention implementations `auto` measures for `mode` at `precision` when the caller names none.

    ipex+jit in bf16 and int8: IPEX fuses the eager attention pattern (not SDPA) into its multi-head-attention
    kernel and quantizes its matmuls in int8, which wins at batch 1; at batch 8 on an Intel Xeon with AMX, SDPA
    won (598 vs 381 ms per call in bf16, issue 31, 2026-12-03). So both are built and timed at the example's
    shape, and the faster runs. Empty (keep the model's attention) for other paths: in fp32 SDPA is as fast or
    faster, and the other modes have no fused eager-attention kernel.
    """
    return ("sdpa", "eager") if mode == "ipex+jit" and precision in ("bf16", INT8) else ()
