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


#: TracerWarnings that mean the trace recorded one input's Python control flow or values as constants.
#: (torch.tensor constants, which transformers' BERT emits, also "might cause the trace to be incorrect" but
#: only when built from inputs; they are not matched.)
_INPUT_DEPENDENT_MARKERS = ("Converting a tensor to a Python", "Iterating over a tensor", "might not generalize")


def input_dependent_trace_warnings(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """The first line of every TracerWarning saying the trace may not generalise to other inputs.

    Such a warning means a tensor became a Python bool/number (an `if` on data, `.item()`, a
    loop over a tensor): the traced graph replays the branch the example took, for every input.
    Other TracerWarnings (e.g. torch.tensor constants, which transformers models emit) pass.
    """
    return [
        str(item.message).split(". ")[0]
        for item in caught
        if issubclass(item.category, torch.jit.TracerWarning)
        and any(marker in str(item.message) for marker in _INPUT_DEPENDENT_MARKERS)
    ]


def contrasting_inputs(example: Mapping[str, torch.Tensor], seed: int = 1234) -> dict[str, torch.Tensor]:
    """Inputs of the example's shapes that take other data-dependent branches than the example.

    Token ids are redrawn (seeded) between 0 and the example's largest id, and the padding is
    flipped: an unpadded attention mask gets its last quarter masked, a padded one becomes all
    ones (transformers models skip the mask when nothing is padded). Other inputs are kept.
    """
    generator = torch.Generator().manual_seed(seed)
    contrasting = dict(example)
    ids = example.get("input_ids")
    if ids is not None and not ids.is_floating_point():
        contrasting["input_ids"] = torch.randint(0, int(ids.max()) + 1, ids.shape, generator=generator, dtype=ids.dtype)
    mask = example.get("attention_mask")
    if mask is not None:
        if bool((mask == 0).any()):
            contrasting["attention_mask"] = torch.ones_like(mask)
        else:
            flipped = mask.clone()
            flipped[..., max(1, mask.shape[-1] * 3 // 4) :] = 0
            contrasting["attention_mask"] = flipped
    return contrasting


def _disagreement_on_contrasting_inputs(
    model: torch.nn.Module, traced: Any, example: Mapping[str, torch.Tensor], dtype: torch.dtype
) -> str | None:
    """None when the traced model matches eager on `contrasting_inputs(example)`, else what went wrong."""
    second = contrasting_inputs(example)
    try:
        with inference_context(dtype, traced=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected, actual = model(**second), traced(**second)
    except Exception as error:  # a trace that cannot even run other inputs is as wrong as one that differs
        return f"it fails on another input ({type(error).__name__}: {error})"
    difference, tolerance = max_abs_difference(expected, actual), parity_tolerance(dtype, expected)
    if not difference <= tolerance:
        return f"on another input it differs from eager by {difference:.3g} (tolerance {tolerance:.3g})"
    return None


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
            warnings.catch_warnings(record=True) as caught,
            _quiet_transformers_attribute_warnings(),
        ):
            warnings.simplefilter("always", torch.jit.TracerWarning)
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
    input_dependent = input_dependent_trace_warnings(caught)
    if input_dependent:
        # The trace replays the branch the example took. Accept it only if it also agrees with eager on an
        # input that takes the other branches a transformers model has (other token ids, other padding).
        problem = _disagreement_on_contrasting_inputs(model, traced, kwargs, dtype)
        if problem:
            return fallback(
                f"the trace froze a value computed from the inputs (TracerWarning: {input_dependent[0]}) "
                f"and {problem}; torch.compile (mode='compile') handles such control flow"
            )
        logger.info("TracerWarning (%s) checked: the trace agrees with eager on a contrasting input",
                    input_dependent[0])
    if verify:
        difference = max_abs_difference(reference, outputs)
        tolerance = parity_tolerance(dtype, reference)
        if not difference <= tolerance:
            return fallback(
                f"the traced model's outputs differ from eager by {difference:.3g} (tolerance {tolerance:.3g})"
            )
    return TraceResult(traced, True, freeze, None, time.perf_counter() - start)
