"""`torch.compile` (Inductor with weight freezing): the modern successor of TorchScript for CPU inference.

TorchScript is deprecated in recent PyTorch and transformers 5 dropped its TorchScript
support; `torch.compile` is the path forward. Compilation happens on the first call, so
`compile_model` runs the warm-up passes itself and, like `trace_model`, verifies the
result against eager and falls back with a logged reason when anything fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .dtypes import as_dtype
from .parity import build_verified_or_eager

logger = logging.getLogger(__name__)


@dataclass
class CompileResult:
    """The outcome of `compile_model`: the model to use and whether it is the compiled one."""

    model: Callable[..., Any]
    compiled: bool
    reason: str | None
    seconds: float


def compile_model(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    dtype: str | torch.dtype = torch.float32,
    freezing: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
) -> CompileResult:
    """Compile `model` with Inductor, warm it up on `example_inputs`, and check it against eager.

    Args:
        model: the model (eval mode is set); it is left unchanged.
        example_inputs: a dict of named tensors; shapes are compiled statically, so use the
            shapes you will run (e.g. padding to a fixed max_seq_length).
        dtype: "fp32" / torch.float32, or "bf16" / torch.bfloat16 to run under CPU autocast.
        freezing: let Inductor treat weights as constants (constant folding, oneDNN weight prepacking).
        warmup_steps: calls after compilation, before anyone times the model.
        verify: compare with eager on the example inputs and fall back beyond `parity_tolerance`.
    """
    dtype = as_dtype(dtype)

    def compile_(inputs: dict[str, torch.Tensor]) -> Any:
        return torch.compile(model, backend="inductor", dynamic=False, options={"freezing": freezing})

    built = build_verified_or_eager(model, example_inputs, compile_, dtype=dtype, what="the compiled model's",
                                    warmup_steps=warmup_steps, verify=verify)
    if not built.applied:
        logger.warning("torch.compile not applied, using the eager model: %s", built.reason)
    return CompileResult(built.model, built.applied, built.reason, built.seconds)
