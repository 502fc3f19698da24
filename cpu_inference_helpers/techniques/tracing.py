"""TorchScript tracing of transformers models with dict inputs, freezing, and a logged fallback.

This mirrors the Trainer's `--jit_mode_eval`: trace with `example_kwarg_inputs`
and `strict=False`, freeze, run two warm-up passes, and when anything fails,
log a warning naming the exception and keep the eager model.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.infra.log_levels import logger_level
from cpu_inference_helpers.record import Built
from cpu_inference_helpers.techniques.deprecations import TORCHSCRIPT_DEPRECATION
from cpu_inference_helpers.techniques.dtypes import precision_name
from cpu_inference_helpers.techniques.ipex_support import IPEX_JIT_DEPRECATION
from cpu_inference_helpers.techniques.parity import build_verified_or_eager, max_abs_difference, parity_tolerance
from cpu_inference_helpers.techniques.precision import inference_context

logger = logging.getLogger(__name__)


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
    ones (transformers models skip the mask when nothing is padded). Floating-point inputs
    (embeddings, features) become `-x - 1`: a branch on their sign or size goes the other way.
    Other inputs are kept.
    """
    generator = torch.Generator().manual_seed(seed)
    contrasting = {name: -value - 1 if isinstance(value, torch.Tensor) and value.is_floating_point() else value
                   for name, value in example.items()}
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
    model: torch.nn.Module, traced: Any, example: Mapping[str, torch.Tensor], dtype: str | torch.dtype
) -> str | None:
    """None when the traced model matches eager on `contrasting_inputs(example)`, else what went wrong."""
    second = contrasting_inputs(example)
    try:
        with inference_context(dtype, traced=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected, actual = model(**second), traced(**second)
    except Exception as error:  # a trace that cannot even run other inputs is as wrong as one that differs
        return f"it fails on another input ({error_summary(error)})"
    difference, tolerance = max_abs_difference(expected, actual), parity_tolerance(dtype, expected)
    if not difference <= tolerance:
        return f"on another input it differs from eager by {difference:.3g} (tolerance {tolerance:.3g})"
    return None


@contextlib.contextmanager
def _tracer_warnings_recorded(caught: list[warnings.WarningMessage]) -> Iterator[None]:
    """Record TracerWarnings into `caught`; keep IPEX's and transformers' irrelevant chatter out of the output."""
    # The tracer reads every property of every submodule, e.g. an inner BertModel's `loss_function`, which
    # logs an irrelevant loss_type warning through transformers.modeling_utils.
    with warnings.catch_warnings(record=True) as recorded, logger_level("transformers.modeling_utils"):
        warnings.simplefilter("always", torch.jit.TracerWarning)
        # IPEX announces on every first run of a traced graph that its JIT passes are deprecated.
        warnings.filterwarnings("ignore", message=IPEX_JIT_DEPRECATION)
        # transformers 5 deprecates properties (is_gradient_checkpointing) that the tracer reads.
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
        # torch 2.10+ deprecates trace and freeze on every call: said once instead, in the record's notes.
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
        try:
            yield
        finally:
            caught.extend(recorded)


def trace_model(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    dtype: str | torch.dtype = torch.float32,
    freeze: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
) -> Built:
    """Trace `model` with named example inputs, freeze it and warm it up; fall back to eager on failure.

    Args:
        model: the model (eval mode is set); it is left unchanged.
        example_inputs: a dict of named tensors, e.g. a tokenizer's output. Positional
            tuples are refused with an explanation (see `positional_inputs_problem`).
        dtype: "fp32" / torch.float32, "bf32" (fp32, bf16 matrix products), or "bf16" /
            torch.bfloat16 to trace under CPU autocast.
        freeze: inline weights and attributes with `torch.jit.freeze` (enables fusions).
        warmup_steps: passes run after tracing, so the profiling executor optimises the
            graph before the caller times anything.
        verify: compare the traced output with the eager output on the example inputs and
            fall back if they differ beyond `parity_tolerance`.

    Returns:
        A `Built` of mode "jit" (`traced` True, `frozen` as asked); when it fell back, mode "eager" with the
        eager model and a fallback `Step("jit", why)`.
    """
    precision_name(dtype)  # a clear ValueError for an unknown precision; the name travels on (bf32 keeps its math)
    caught: list[warnings.WarningMessage] = []

    def trace(inputs: dict[str, torch.Tensor]) -> Any:
        # check_trace re-runs eager and traced once more; `verify` makes the stronger check
        # (the frozen, optimised graph against eager, with a tolerance suited to the dtype).
        traced = torch.jit.trace(model, example_kwarg_inputs=inputs, strict=False, check_trace=not verify)
        return torch.jit.freeze(traced) if freeze else traced

    def check_input_dependence(traced: Any, inputs: dict[str, torch.Tensor]) -> str | None:
        input_dependent = input_dependent_trace_warnings(caught)
        if not input_dependent:
            return None
        # The trace replays the branch the example took. Accept it only if it also agrees with eager on an
        # input that takes the other branches a transformers model has (other token ids, other padding).
        problem = _disagreement_on_contrasting_inputs(model, traced, inputs, dtype)
        if problem:
            return (f"the trace froze a value computed from the inputs (TracerWarning: {input_dependent[0]}) "
                    f"and {problem}; torch.compile (mode='compile') handles such control flow")
        logger.info("TracerWarning (%s) checked: the trace agrees with eager on a contrasting input",
                    input_dependent[0])
        return None

    built = build_verified_or_eager(
        model, example_inputs, trace, mode="jit", dtype=dtype, what="the traced model's", warmup_steps=warmup_steps,
        verify=verify, traced=True, context=lambda: _tracer_warnings_recorded(caught),
        not_a_dict=lambda: positional_inputs_problem(model, example_inputs),
        after_build=check_input_dependence,
    )
    if built.fell_back:
        logger.warning("failed to use PyTorch jit mode due to: %s. Using the eager model.", built.reason)
    else:
        built.frozen = freeze
        built.applied.append("torch.jit.trace" + (" + freeze" if freeze else ""))
    return built
