"""TorchScript tracing of transformers models with dict inputs, freezing, and a logged fallback.

This mirrors the Trainer's `--jit_mode_eval`: trace with `example_kwarg_inputs`
and `strict=False`, freeze, run two warm-up passes, and when anything fails,
log a warning naming the exception and keep the eager model.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .precision import inference_context

logger = logging.getLogger(__name__)


@dataclass
class TraceResult:
    """The outcome of `trace_model`: the model to use and whether it is the traced one."""

    model: Callable[..., Any]
    traced: bool
    frozen: bool
    reason: str | None
    seconds: float


def forward_parameter_names(model: torch.nn.Module) -> list[str]:
    """The names of `model.forward`'s parameters, in positional order."""
    return [
        name
        for name, parameter in inspect.signature(model.forward).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]


def positional_inputs_problem(model: torch.nn.Module, example_inputs: Sequence[Any]) -> str:
    """Explain why positional example inputs are unsafe for this model."""
    order = forward_parameter_names(model)[: max(len(example_inputs), 1)]
    return (
        f"positional example inputs ({len(example_inputs)} tensors) are bound by position to forward's "
        f"parameters {order}; a tokenizer's dict order (input_ids, token_type_ids, attention_mask) does "
        "not match that order and the trace would silently compute the wrong thing. "
        "Pass a dict of named tensors (example_kwarg_inputs) instead"
    )


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


def max_abs_difference(reference: Any, candidate: Any) -> float:
    """Largest absolute difference between two model outputs, in fp32; inf if their shapes differ."""
    ref, cand = flatten_outputs(reference), flatten_outputs(candidate)
    if len(ref) != len(cand) or any(a.shape != b.shape for a, b in zip(ref, cand, strict=True)):
        return float("inf")
    if not ref:
        return 0.0
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(ref, cand, strict=True))


def parity_tolerance(dtype: torch.dtype, reference: Any) -> float:
    """The absolute difference accepted between two runs of the same model in `dtype`.

    fp32: 1e-4 relative to the output scale (reordered sums differ in the last bits).
    bf16: 8 bits of mantissa; 5e-2 relative to the output scale.
    """
    scale = max([1.0] + [t.float().abs().max().item() for t in flatten_outputs(reference)])
    return (5e-2 if dtype == torch.bfloat16 else 1e-4) * scale


@contextlib.contextmanager
def _quiet_transformers_attribute_warnings() -> Iterator[None]:
    """Silence transformers' modeling_utils logger while the tracer walks module attributes.

    Scripting a traced module evaluates every property of every submodule, e.g. the
    `loss_function` of an inner `BertModel`, which logs an irrelevant loss_type warning.
    """
    utils_logger = logging.getLogger("transformers.modeling_utils")
    previous = utils_logger.level
    utils_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        utils_logger.setLevel(previous)


def trace_model(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    dtype: torch.dtype = torch.float32,
    freeze: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
) -> TraceResult:
    """Trace `model` with named example inputs, freeze it and warm it up; fall back to eager on failure.

    Args:
        model: the model (eval mode is set); it is left unchanged.
        example_inputs: a dict of named tensors, e.g. a tokenizer's output. Positional
            tuples are refused with an explanation (see `positional_inputs_problem`).
        dtype: torch.float32, or torch.bfloat16 to trace under CPU autocast.
        freeze: inline weights and attributes with `torch.jit.freeze` (enables fusions).
        warmup_steps: passes run after tracing, so the profiling executor optimises the
            graph before the caller times anything.
        verify: compare the traced output with the eager output on the example inputs and
            fall back if they differ beyond `parity_tolerance`.

    Returns:
        A `TraceResult`; when `traced` is False, `model` is the eager model and `reason` says why.
    """
    start = time.perf_counter()

    def fallback(reason: str) -> TraceResult:
        logger.warning("failed to use PyTorch jit mode due to: %s. Using the eager model.", reason)
        return TraceResult(model, False, False, reason, time.perf_counter() - start)

    if not isinstance(example_inputs, Mapping):
        return fallback(positional_inputs_problem(model, example_inputs))
    kwargs = dict(example_inputs)
    model.eval()
    try:
        with (
            inference_context(dtype, traced=True),
            warnings.catch_warnings(),
            _quiet_transformers_attribute_warnings(),
        ):
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # IPEX announces on every first run of a traced graph that its JIT passes are deprecated.
            warnings.filterwarnings("ignore", message=".*JIT pass will be deprecated.*")
            # transformers 5 deprecates properties (is_gradient_checkpointing) that the tracer reads.
            warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
            reference = model(**kwargs) if verify else None
            # check_trace re-runs eager and traced once more; `verify` below makes the stronger check
            # (the frozen, optimised graph against eager, with a tolerance suited to the dtype).
            traced = torch.jit.trace(model, example_kwarg_inputs=kwargs, strict=False, check_trace=not verify)
            if freeze:
                traced = torch.jit.freeze(traced)
            outputs = None
            for _ in range(max(warmup_steps, 1 if verify else 0)):
                outputs = traced(**kwargs)
    except Exception as error:  # the Trainer catches the same broad family; the reason is logged
        return fallback(f"{type(error).__name__}: {error}".strip())
    if verify:
        difference = max_abs_difference(reference, outputs)
        tolerance = parity_tolerance(dtype, reference)
        if not difference <= tolerance:
            return fallback(
                f"the traced model's outputs differ from eager by {difference:.3g} (tolerance {tolerance:.3g})"
            )
    return TraceResult(traced, True, freeze, None, time.perf_counter() - start)
