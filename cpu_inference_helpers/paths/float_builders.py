"""The floating-point builders: fp32, bf16 (autocast), bf32 (fp32 tensors, bf16 matrix products).

One factory per mode, each returning the builder of that mode in a precision. A builder applies its
technique or raises `PathUnavailable` saying why; which path is built instead is the table's data
(`table.PathBuilder.fallback`), walked by `table.build_path`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cpu_inference_helpers.paths.options import BuildRequest
from cpu_inference_helpers.paths.unavailable import IPEX_UNUSABLE, TRACE_FAILED, PathUnavailable
from cpu_inference_helpers.record import Built, Step
from cpu_inference_helpers.techniques.compiling import compile_model
from cpu_inference_helpers.techniques.dtypes import BF32
from cpu_inference_helpers.techniques.exporting import export_model
from cpu_inference_helpers.techniques.ipex_support import load_ipex, optimize_with_ipex, probe_ipex
from cpu_inference_helpers.techniques.kernel_choice import choose_compile_shapes, choose_fp32_kernel
from cpu_inference_helpers.techniques.precision import inference_context
from cpu_inference_helpers.techniques.tracing import trace_model

Builder = Callable[[BuildRequest], Built]

#: Said with every failed trace: the mode that replaced TorchScript.
_JIT_HINT = " (mode 'compile', torch.compile, is the modern alternative)"


def precision_applied(precision: str) -> list[str]:
    """What running in `precision` adds to `Built.applied` ("bf16 autocast", bf32's math mode; nothing else)."""
    if precision == "bf16":
        return ["bf16 autocast"]
    if precision == BF32:
        return ["bf32 (oneDNN bf16 math for fp32 matrix products)"]
    return []


def eager_builder(precision: str) -> Builder:
    """The model as it is, run in `precision`'s context: the entry that cannot fail."""
    def build(request: BuildRequest) -> Built:
        return Built(request.model, "eager", precision, applied=precision_applied(precision))
    return build


def jit_builder(precision: str) -> Builder:
    """TorchScript trace + freeze of the model."""
    def build(request: BuildRequest) -> Built:
        return _traced(request.model, request, precision, optimised=None)
    return build


def ipex_builder(precision: str) -> Builder:
    """ipex.optimize; unavailable (`IPEX_UNUSABLE`) where IPEX cannot be imported or applied."""
    def build(request: BuildRequest) -> Built:
        return _ipex_optimised(request, precision)
    return build


def ipex_jit_builder(precision: str) -> Builder:
    """ipex.optimize, then trace + freeze: `IPEX_UNUSABLE` when ipex.optimize fails, `TRACE_FAILED` (with
    ipex.optimize's model salvaged for the ipex entry) when only the trace fails."""
    def build(request: BuildRequest) -> Built:
        optimised = _ipex_optimised(request, precision)
        return _traced(optimised.model, request, precision, optimised=optimised)
    return build


def compile_builder(precision: str) -> Builder:
    """torch.compile (Inductor, freezing); static or dynamic shapes measured for frozen fp32 unless given."""
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
            raise PathUnavailable(*compiled.fallbacks)
        compiled.applied[:0] = precision_applied(precision)
        compiled.choices[:0] = choices
        return compiled
    return build


def export_builder(precision: str) -> Builder:
    """torch.export + AOTInductor package (dynamic batch and sequence unless dynamic_shapes=False)."""
    def build(request: BuildRequest) -> Built:
        exported = exported_model(request.model, request, precision)
        if exported.fell_back:
            raise PathUnavailable(*exported.fallbacks)
        exported.applied[:0] = precision_applied(precision)
        return exported
    return build


def exported_model(model: torch.nn.Module, request: BuildRequest, precision: str) -> Built:
    """`export_model` of `model` with the request's options; its own fallbacks are left to the caller."""
    options = request.options
    return export_model(model, request.inputs, dtype=precision, freeze=options.freeze,
                        warmup_steps=options.warmup_steps, verify=options.verify,
                        dynamic=True if options.dynamic_shapes is None else options.dynamic_shapes,
                        package_path=options.package_path)


def _traced(model: Any, request: BuildRequest, precision: str, optimised: Built | None) -> Built:
    """Trace `model` (eager, or ipex.optimize's `optimised` one); `TRACE_FAILED` when tracing fails."""
    options = request.options
    trace = trace_model(model, request.inputs, dtype=precision, freeze=options.freeze,
                        warmup_steps=options.warmup_steps, verify=options.verify)
    if trace.fell_back:
        raise PathUnavailable(Step("jit", trace.reason + _JIT_HINT), kind=TRACE_FAILED, salvaged=optimised)
    if optimised is None:
        trace.applied[:0] = precision_applied(precision)
    else:  # the precision's and ipex.optimize's steps come first
        trace.applied[:0] = optimised.applied
        trace.choices[:0] = optimised.choices
        trace.mode = "ipex+jit"
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
    if built.fell_back:
        raise PathUnavailable(*built.fallbacks, kind=IPEX_UNUSABLE)
    built.applied[:0] = precision_applied(precision)
    built.choices[:0] = choices
    return built
