"""`torch.compile` (Inductor with weight freezing): the modern successor of TorchScript for CPU inference.

TorchScript is deprecated in recent PyTorch and transformers 5 dropped its TorchScript
support; `torch.compile` is the path forward. Compilation happens on the first call, so
`compile_model` runs the warm-up passes itself and, like `trace_model`, verifies the
result against eager and falls back with a logged reason when anything fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .precision import inference_context
from .tracing import max_abs_difference, parity_tolerance

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
    dtype: torch.dtype = torch.float32,
    freezing: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
) -> CompileResult:
    """Compile `model` with Inductor, warm it up on `example_inputs`, and check it against eager.

    Args:
        model: the model (eval mode is set); it is left unchanged.
        example_inputs: a dict of named tensors; shapes are compiled statically, so use the
            shapes you will run (e.g. padding to a fixed max_seq_length).
        dtype: torch.float32, or torch.bfloat16 to run under CPU autocast.
        freezing: let Inductor treat weights as constants (constant folding, oneDNN weight prepacking).
        warmup_steps: calls after compilation, before anyone times the model.
        verify: compare with eager on the example inputs and fall back beyond `parity_tolerance`.
    """
    start = time.perf_counter()

    def fallback(reason: str) -> CompileResult:
        logger.warning("torch.compile not applied, using the eager model: %s", reason)
        return CompileResult(model, False, reason, time.perf_counter() - start)

    if not isinstance(example_inputs, Mapping):
        return fallback("example inputs must be a dict of named tensors")
    kwargs = dict(example_inputs)
    model.eval()
    try:
        compiled = torch.compile(model, backend="inductor", dynamic=False, options={"freezing": freezing})
        with inference_context(dtype):
            reference = model(**kwargs) if verify else None
            outputs = None
            for _ in range(max(warmup_steps, 1)):  # the first call compiles
                outputs = compiled(**kwargs)
    except Exception as error:  # compiler errors come in many types (BackendCompilerFailed, CppCompileError...)
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return fallback(f"{type(error).__name__}: {message}")
    if verify:
        difference = max_abs_difference(reference, outputs)
        tolerance = parity_tolerance(dtype, reference)
        if not difference <= tolerance:
            return fallback(
                f"the compiled model's outputs differ from eager by {difference:.3g} (tolerance {tolerance:.3g})"
            )
    return CompileResult(compiled, True, None, time.perf_counter() - start)
