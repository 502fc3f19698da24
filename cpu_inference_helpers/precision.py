"""Numeric precision choices: fp32 or bf16 mixed precision, and the contexts that run them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from .capabilities import CpuCapabilities, cached_capabilities
from .dtypes import as_dtype

logger = logging.getLogger(__name__)


def resolve_precision(
    requested: str | torch.dtype,
    capabilities: CpuCapabilities | None = None,
    allow_emulated_bf16: bool = False,
) -> tuple[torch.dtype, str | None]:
    """Decide the dtype to run, given what the CPU supports.

    bf16 pays off only with native bf16 instructions (AVX512_BF16, AMX or ARM BF16);
    elsewhere it is emulated and slower than fp32, so fp32 is used unless the caller
    insists with `allow_emulated_bf16`.

    Returns:
        The dtype to use and, when it differs from the request, the reason.
    """
    requested = as_dtype(requested)
    if requested != torch.bfloat16:
        return requested, None
    caps = capabilities or cached_capabilities()
    if caps.native_bf16 or allow_emulated_bf16:
        return requested, None
    return torch.float32, (
        f"bf16 requested but this CPU ({caps.model_name}) has no native bf16 instructions "
        "(AVX512_BF16, AMX-BF16 or ARM BF16): bf16 would be emulated and slower, so fp32 is used; "
        "pass allow_emulated_bf16=True to force it"
    )


@contextlib.contextmanager
def jit_autocast_disabled() -> Iterator[None]:
    """Turn off TorchScript's own autocast pass, so a graph traced under autocast keeps its casts."""
    previous = torch._C._jit_set_autocast_mode(False)
    try:
        yield
    finally:
        torch._C._jit_set_autocast_mode(previous)


@contextlib.contextmanager
def inference_context(dtype: str | torch.dtype, traced: bool = False) -> Iterator[None]:
    """No-grad inference, under bf16 CPU autocast when `dtype` is bfloat16 (or "bf16").

    Autocast runs with `cache_enabled=False`: with the weight-cast cache on, a trace
    records cached casts and fails its own check (the Trainer's setting too).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if as_dtype(dtype) == torch.bfloat16:
            if traced:
                stack.enter_context(jit_autocast_disabled())
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False))
        yield
