"""The int8 builders: PyTorch's dynamic int8 Linear (eager, jit), IPEX's static int8 with SmoothQuant
(ipex+jit), PT2E int8 (compile), torchao's int8 (export).

A builder that cannot apply its technique logs why and raises `PathUnavailable`; the table builds the
declared fallback (`table.PathBuilder.fallback`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.paths.float_builders import exported_model
from cpu_inference_helpers.paths.int8_speed import int8_kernel_problem, int8_slowdown_problem
from cpu_inference_helpers.paths.options import BuildRequest
from cpu_inference_helpers.paths.unavailable import PathUnavailable
from cpu_inference_helpers.record import Built, Step
from cpu_inference_helpers.techniques.compiling import compile_model
from cpu_inference_helpers.techniques.dtypes import INT8
from cpu_inference_helpers.techniques.ipex_support import probe_ipex
from cpu_inference_helpers.techniques.parity import (
    abs_difference_quantile,
    build_verified_or_eager,
    max_abs_difference,
    parity_tolerance,
)
from cpu_inference_helpers.techniques.precision import Bf16Autocast
from cpu_inference_helpers.techniques.pt2e_quantization import PT2E_SMOOTH_QUANT_ALPHA, quantize_pt2e
from cpu_inference_helpers.techniques.quantization import (
    SMOOTH_QUANT_ALPHA,
    calibrated_ipex_int8,
    quantize_dynamic_linear,
    quantize_with_torchao,
)
from cpu_inference_helpers.techniques.tracing import trace_model

logger = logging.getLogger(__name__)

_DYNAMIC_APPLIED = "dynamic int8 Linear (torch.ao quantize_dynamic)"


def _unavailable(path: str, reason: str, salvaged: Built | None = None) -> PathUnavailable:
    """The signal for int8 path `path` not applied, logged as a warning."""
    logger.warning("int8 path %s not applied: %s", path, reason)
    return PathUnavailable(Step(path, reason), salvaged=salvaged)


def _dynamic_int8(request: BuildRequest, path: str) -> Built:
    """PyTorch's dynamic int8 Linear on a copy of the model; `path` unavailable where it fails."""
    try:
        quantized = quantize_dynamic_linear(request.model)
    except Exception as error:  # noqa: BLE001 - e.g. no quantized engine for this CPU
        reason = f"dynamic quantization failed ({error_summary(error)}); fp32 runs"
        logger.warning("int8 not applied, running fp32: %s", reason)
        raise PathUnavailable(Step(path, reason)) from error
    return Built(quantized, "eager", INT8, applied=[_DYNAMIC_APPLIED])


def eager_int8(request: BuildRequest) -> Built:
    """PyTorch's dynamic int8 Linear, run eagerly."""
    return _dynamic_int8(request, "eager:int8")


def jit_int8(request: BuildRequest) -> Built:
    """Dynamic int8 Linear, traced + frozen; when the trace fails, the dynamic int8 model is salvaged."""
    dynamic = _dynamic_int8(request, "jit:int8")
    options = request.options
    # The traced graph runs the same dynamic int8 kernels as its eager twin: checked at fp32's tolerance.
    trace = trace_model(dynamic.model, request.inputs, dtype="fp32", freeze=options.freeze,
                        warmup_steps=options.warmup_steps, verify=options.verify)
    if trace.fell_back:
        raise _unavailable("jit:int8", f"tracing the int8 model failed: {trace.reason}", salvaged=dynamic)
    trace.precision = INT8
    trace.applied[:0] = dynamic.applied
    return trace


def ipex_int8(request: BuildRequest) -> Built:
    """None of its own: IPEX's int8 kernels run only in its TorchScript graph (always unavailable)."""
    raise _unavailable("ipex:int8", "IPEX's int8 kernels run only inside its TorchScript graph: use mode ipex+jit")


def ipex_jit_int8(request: BuildRequest) -> Built:
    """IPEX static int8 with SmoothQuant (alpha: the `smooth_quant_alpha` option), calibrated, traced + frozen; on a
    CPU with AMX traced and run under bf16 autocast (int8-mixed-bf16, `precision_policy.int8_mixed_bf16`)."""
    options, calibration = request.options, list(request.options.calibration)
    alpha = SMOOTH_QUANT_ALPHA if options.smooth_quant_alpha is None else options.smooth_quant_alpha
    if not probe_ipex().usable:
        raise _unavailable("ipex+jit:int8", f"IPEX is not usable here ({probe_ipex().reason})")
    if not calibration:
        raise _unavailable("ipex+jit:int8", "static int8 needs calibration batches (calibration=...), none were given")
    try:
        calibrated = calibrated_ipex_int8(request.model, request.inputs, calibration, alpha=alpha)
    except Exception as error:  # noqa: BLE001 - IPEX's quantizer failing on this model
        raise _unavailable("ipex+jit:int8", error_summary(error)) from error

    # (imported here: the policy's bf32 check builds paths through this table)
    from cpu_inference_helpers.paths.precision_policy import int8_mixed_bf16

    mixed_bf16, float_parts = int8_mixed_bf16(request.capabilities)

    def trace_and_freeze(inputs: dict[str, torch.Tensor]) -> Any:
        # int8-mixed-bf16 as IPEX documents it: traced and frozen under bf16 autocast, so its int8 kernels read
        # and write bf16 and what stays unquantized (attention, softmax, GELU) runs in bf16. The trace records the
        # casts: called without autocast it runs the same (41.6 vs 42.3 ms under autocast, random-bert-base
        # 384x1, Intel Xeon with AMX, 2026-12-06) and returns bf16, which the front door gives back as fp32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_bf16):
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
        raise _unavailable("ipex+jit:int8", f"tracing IPEX's int8 model failed: {built.reason}")
    built.frozen = options.freeze
    mixed = ", int8-mixed-bf16" if mixed_bf16 else ""
    built.applied = [f"IPEX static int8 (SmoothQuant alpha {alpha}, {len(calibration)} calibration batches{mixed})"
                     " + trace" + (" + freeze" if options.freeze else "")]
    built.choices.append(float_parts)
    return built


#: Share of the outputs that may differ beyond tolerance in the int8-mixed-bf16 check (`mixed_precision_problem`).
MIXED_PRECISION_OUTLIER_SHARE = 0.01


def mixed_precision_problem(reference: torch.nn.Module, candidate: Any, inputs: dict[str, torch.Tensor]
                            ) -> str | None:
    """None when `candidate` (compiled int8-mixed-bf16) matches `reference` (the same graph run eagerly) within
    int8's and bf16's tolerances added together on all but `MIXED_PRECISION_OUTLIER_SHARE` of its outputs; else
    the sentence saying by how much it does not.

    Not every output: where bf16 rounds an activation across a static int8 step, the outputs downstream move by
    that step. On minilm-squad at seq 384 (PT2E static, SmoothQuant alpha 0.9, 2026-12-06) one logit of 768
    moved by 1.94 (tolerance 1.15) while their mean moved by 0.03; a graph that computes something else moves
    most of them.
    """
    with torch.no_grad():
        expected, got = reference(**inputs), candidate(**inputs)
    tolerance = parity_tolerance(INT8, expected) + parity_tolerance("bf16", expected)
    difference = abs_difference_quantile(expected, got, 1 - MIXED_PRECISION_OUTLIER_SHARE)
    if difference <= tolerance:
        return None
    return (f"outputs differ from the int8 graph run eagerly by {difference:.3g} at the "
            f"{1 - MIXED_PRECISION_OUTLIER_SHARE:.0%} quantile (largest {max_abs_difference(expected, got):.3g}; "
            f"tolerance {tolerance:.3g})")


@contextlib.contextmanager
def _warnings_ignored() -> Iterator[None]:
    """Tracing IPEX's int8 model warns about every quantization scale it records as a constant (as it should)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def compile_int8(request: BuildRequest) -> Built:
    """PT2E int8 (per-channel int8 weights), compiled by Inductor with freezing.

    `X86InductorQuantizer` on a strict export (`pt2e_quantization`), lowered by `torch.compile` into oneDNN int8
    kernels; on a CPU with AMX inside bf16 autocast (int8-mixed-bf16: the unquantized attention, softmax and
    GELU in bf16; `precision_policy.int8_mixed_bf16`). Activation ranges: static, after SmoothQuant (alpha: the
    `smooth_quant_alpha` option, default `PT2E_SMOOTH_QUANT_ALPHA`), where calibration batches are given;
    dynamic (measured on every call) otherwise. With static ranges Inductor times its C++ GEMM templates against
    oneDNN for each matrix product (`compiling.GEMM_AUTOTUNE_SETTINGS`) where the CPU has AMX or AVX-512 VNNI
    (`precision_policy.int8_gemm_autotune`). Checked against the quantized graph run eagerly.
    """
    options = request.options
    calibration = list(options.calibration)
    alpha = PT2E_SMOOTH_QUANT_ALPHA if options.smooth_quant_alpha is None else options.smooth_quant_alpha
    if calibration:
        activations = f"static activations: SmoothQuant alpha {alpha}, {len(calibration)} calibration batches"
    else:
        activations = "dynamic activations"
        if options.smooth_quant_alpha is not None:
            logger.warning("compile:int8 was given smooth_quant_alpha but no calibration batches: SmoothQuant "
                           "needs them, so activation ranges are measured on every call (dynamic) instead")
    # (imported here: the policy's bf32 check builds paths through this table)
    from cpu_inference_helpers.paths.precision_policy import int8_gemm_autotune, int8_mixed_bf16, int8_reduce_range

    reduce_range, activation_range = int8_reduce_range(request.capabilities)
    try:
        quantized: torch.nn.Module = quantize_pt2e(request.model, request.inputs, calibration,
                                                   dynamic_activations=not calibration,
                                                   smooth_quant_alpha=alpha if calibration else None,
                                                   reduce_range=reduce_range)
    except Exception as error:  # noqa: BLE001 - export refusing the model, or the quantizer failing on it
        raise _unavailable("compile:int8", f"PT2E int8 failed: {error_summary(error)}") from error

    mixed_bf16, float_parts = int8_mixed_bf16(request.capabilities)
    # int8 alone is checked by compile_model against the graph run eagerly (int8's tolerance); int8-mixed-bf16
    # against the same graph run eagerly under autocast, with int8's and bf16's tolerances added: Inductor's
    # fused kernels round in other places (bf16 between the int8 kernels) than the eager quantize/dequantize ops
    wrapped = Bf16Autocast(quantized) if mixed_bf16 else quantized
    # static ranges: Inductor's C++ GEMM templates (quantization fused around the AMX / VNNI micro-kernel) are
    # timed against oneDNN's qlinear per matrix product (about 1.1x over untuned at seq 384 batch 1, AMX; docs/int8.md)
    # (not on CPUs without AMX or AVX-512 VNNI: the template computed wrong results on an AVX2-only one)
    static_ranges = bool(calibration)
    autotune_here, gemm_kernels = int8_gemm_autotune(request.capabilities)
    compiled = compile_model(wrapped, request.inputs, dtype=INT8,
                             freezing=options.freeze, warmup_steps=options.warmup_steps,
                             verify=options.verify and not mixed_bf16, gemm_autotune=static_ranges and autotune_here)
    if compiled.fell_back:
        raise _unavailable("compile:int8", f"torch.compile of the PT2E int8 graph failed: {compiled.reason}")
    if mixed_bf16 and options.verify:
        problem = mixed_precision_problem(wrapped, compiled.model, request.inputs)
        if problem:
            raise _unavailable("compile:int8", f"the compiled int8-mixed-bf16 graph failed its check: {problem}")
    # compile_model's own entry says how it compiled (freezing, GEMMs autotuned); the quantization comes first
    compiled.applied.insert(0, f"PT2E int8 (X86InductorQuantizer, {activations}"
                            + (", int8-mixed-bf16" if mixed_bf16 else "") + ")")
    compiled.choices.append(float_parts)
    compiled.choices.append(activation_range)
    if static_ranges:
        compiled.choices.append(gemm_kernels)
    return compiled


def export_int8(request: BuildRequest) -> Built:
    """torchao int8 dynamic activations + int8 weights, then torch.export + AOTInductor package; unavailable where
    `torch._int_mm` takes 3x fp32's time or more on one product of the model's shape (not built then), or the
    package 1.5x eager fp32's time or more on the example inputs (`int8_speed`)."""
    def export_quantized(quantized: torch.nn.Module) -> Built:
        # Checked against the torchao model run eagerly: the same int8 math, before AOTInductor fuses it.
        exported = exported_model(quantized, request, INT8)
        if not exported.fell_back:  # not kept where it is 1.5x slower than fp32 here or more (int8_speed)
            slow = int8_slowdown_problem(exported.model, request.model, request.inputs, request.capabilities)
            if slow:
                raise _unavailable("export:int8", slow)
        exported.applied[:0] = ["torchao int8 dynamic activations + int8 weights"]
        return exported

    return _torchao_int8("export:int8", request, export_quantized, "exporting the torchao model failed",
                         "; PyTorch's dynamic int8 Linear holds TorchScript objects that torch.export cannot take")


def _torchao_int8(path: str, request: BuildRequest, build: Callable[[torch.nn.Module], Built], failure: str,
                  missing_hint: str = "") -> Built:
    """torchao's int8 quantization, then `build` on the quantized model; `path` unavailable, with why, otherwise."""
    if importlib.util.find_spec("torchao") is None:
        raise _unavailable(path, "torchao is not installed (pip install torchao)" + missing_hint)
    # torchao's dynamic int8 runs its products as torch._int_mm: timed first (milliseconds), against the minutes of
    # quantizing and building where they are slow
    slow_kernels = int8_kernel_problem(request.model, request.capabilities)
    if slow_kernels:
        raise _unavailable(path, slow_kernels)
    try:
        quantized = quantize_with_torchao(request.model)
    except Exception as error:  # noqa: BLE001
        raise _unavailable(path, f"torchao's quantize_ failed: {error_summary(error)}") from error
    built = build(quantized)
    if built.fell_back:
        raise _unavailable(path, f"{failure}: {built.reason}")
    return built
