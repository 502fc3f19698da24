"""Output parity: how far two runs of a model differ, what difference is acceptable, and the shared
build -> warm up -> check against eager -> fall back skeleton of tracing and compiling."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.record import Built, Step
from cpu_inference_helpers.techniques.dtypes import BF32, INT8, precision_name
from cpu_inference_helpers.techniques.precision import inference_context

logger = logging.getLogger(__name__)


def flatten_outputs(outputs: Any) -> list[torch.Tensor]:
    """The tensors of a model output (ModelOutput, dict, tuple or tensor), in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        items = outputs.values()
    elif isinstance(outputs, (tuple, list)):
        items = outputs
    else:
        return []
    return [tensor for item in items for tensor in flatten_outputs(item)]


def _element_differences(reference: Any, candidate: Any) -> torch.Tensor | None:
    """The absolute differences of two model outputs' elements, flattened into one fp32 tensor; None if the
    outputs' structures or shapes differ."""
    ref, cand = flatten_outputs(reference), flatten_outputs(candidate)
    if len(ref) != len(cand) or any(a.shape != b.shape for a, b in zip(ref, cand, strict=True)):
        return None
    differences = [(a.float() - b.float()).abs().flatten() for a, b in zip(ref, cand, strict=True)]
    return torch.cat(differences) if differences else torch.zeros(1)


def max_abs_difference(reference: Any, candidate: Any) -> float:
    """Largest absolute difference between two model outputs, in fp32; inf if their shapes differ."""
    differences = _element_differences(reference, candidate)
    return float("inf") if differences is None else differences.max().item()


def abs_difference_quantile(reference: Any, candidate: Any, quantile: float) -> float:
    """The `quantile` (in [0, 1]) of the absolute differences between two model outputs' elements, in fp32;
    inf if their shapes differ. 1.0 is `max_abs_difference`."""
    differences = _element_differences(reference, candidate)
    return float("inf") if differences is None else torch.quantile(differences, quantile).item()


def parity_tolerance(dtype: str | torch.dtype, reference: Any) -> float:
    """The absolute difference accepted between two runs of the same model in `dtype`.

    fp32: 1e-4 relative to the output scale (reordered sums differ in the last bits).
    bf16 and bf32 (bf16 matrix products): 8 bits of mantissa; 5e-2 relative to the output scale.
    int8 (a quantized model's compiled or traced graph against the same quantized model run eagerly):
    a fused kernel may round an activation to the neighbouring int8 step; 1e-1 relative to the output scale.
    """
    scale = max([1.0] + [t.float().abs().max().item() for t in flatten_outputs(reference)])
    name = precision_name(dtype)
    if name == INT8:
        return 1e-1 * scale
    return (5e-2 if name in (BF32, "bf16") else 1e-4) * scale


def parity_problem(reference: Any, candidate: Any, dtype: str | torch.dtype, what: str) -> str | None:
    """None when `candidate` matches `reference` within `parity_tolerance`, else the sentence saying how not."""
    difference, tolerance = max_abs_difference(reference, candidate), parity_tolerance(dtype, reference)
    if difference <= tolerance:
        return None
    return f"{what} outputs differ from eager by {difference:.3g} (tolerance {tolerance:.3g})"


def build_verified_or_eager(
    model: torch.nn.Module,
    example_inputs: Any,
    build: Callable[[dict[str, torch.Tensor]], Callable[..., Any]],
    *,
    mode: str,
    dtype: str | torch.dtype,
    what: str,
    warmup_steps: int = 2,
    verify: bool = True,
    traced: bool = False,
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    not_a_dict: Callable[[], str] = lambda: "example inputs must be a dict of named tensors",
    after_build: Callable[[Callable[..., Any], dict[str, torch.Tensor]], str | None] | None = None,
) -> Built:
    """Build an optimised version of `model`, warm it up, check it against eager, or fall back to eager.

    The steps tracing and compiling share: refuse non-dict example inputs (`not_a_dict()` says why),
    run eager once for reference, `build(inputs)` the optimised callable and call it `warmup_steps`
    times (the first calls optimise or compile), all inside `inference_context(dtype)` and `context()`;
    then `after_build` may veto the result, and `verify` compares the last warm-up output with eager
    within `parity_tolerance`. Any exception or veto returns the eager model with a fallback `Step`
    named `mode`, which the caller logs in its own words.

    Args:
        model: the eager model; it is set to eval mode and left otherwise unchanged.
        example_inputs: a dict of named tensors of the shapes that will run.
        build: makes the optimised callable from the example inputs.
        mode: the mode the result runs as when it works ("jit", "compile"), and the fallback's step name.
        dtype: the precision it runs in (bf16 runs under CPU autocast; int8 compares with int8's tolerance).
        what: how the reason names the result, e.g. "the traced model's".
        traced: run under the TorchScript-aware autocast context (see `inference_context`).
    """
    precision = precision_name(dtype)

    def eager(reason: str) -> Built:
        return Built(model, "eager", precision, fallbacks=[Step(mode, reason)])

    if not isinstance(example_inputs, Mapping):
        return eager(not_a_dict())
    inputs = dict(example_inputs)
    model.eval()
    try:
        with inference_context(dtype, traced=traced), context():
            reference = model(**inputs) if verify else None
            optimised = build(inputs)
            outputs = None
            for _ in range(max(warmup_steps, 1 if verify else 0)):
                outputs = optimised(**inputs)
    except Exception as error:  # tracers and compilers fail in many types (TracingCheckError, BackendCompilerFailed...)
        return eager(error_summary(error))
    veto = after_build(optimised, inputs) if after_build else None
    if veto:
        return eager(veto)
    problem = parity_problem(reference, outputs, dtype, what) if verify else None
    if problem:
        return eager(problem)
    return Built(optimised, mode, precision, traced=traced, warmed_up=True,
                 eager_output_type=type(reference) if reference is not None else None)
