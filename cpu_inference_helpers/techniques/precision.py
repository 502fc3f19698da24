"""Numeric precision choices: fp32, bf16 mixed precision or bf32, and the contexts that run them.

bf32 keeps the model and its tensors in fp32 but lets oneDNN compute the matrix products with
bf16 inputs and fp32 accumulation ("implicit bf16": PyTorch's mkldnn fp32 precision "bf16",
IPEX's `FP32MathMode.BF32`). It is opt-in only (never chosen by `auto`), and it changes the
numbers only where oneDNN implements it, on CPUs with AMX: on AVX512_BF16 without AMX
(AMD Zen 5) oneDNN keeps computing in fp32, so the helpers run fp32 there and say so.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from cpu_inference_helpers.techniques.capabilities import CpuCapabilities, cached_capabilities
from cpu_inference_helpers.techniques.dtypes import BF32, as_dtype, precision_name

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


def bf32_fallback_reason(capabilities: CpuCapabilities | None = None) -> str | None:
    """Why bf32 would run as plain fp32 on this CPU (no AMX), or None where oneDNN implements it."""
    caps = capabilities or cached_capabilities()
    if caps.has_amx:
        return None
    return (f"bf32 requested but this CPU ({caps.model_name}) has no AMX: oneDNN computes fp32 matrix "
            "products in full fp32 there (its implicit bf16 needs AMX), so fp32 is used; ask for bf16 for speed")


@contextlib.contextmanager
def fp32_matmul_in_bf16() -> Iterator[None]:
    """Let oneDNN compute fp32 matrix products in bf16 inside the block ("bf32"); restores the settings after.

    Sets PyTorch's mkldnn fp32 matmul precision to "bf16" (`torch.backends.mkldnn.matmul.fp32_precision`
    from torch 2.9, `torch.set_float32_matmul_precision("medium")` before), which eager, TorchScript
    and Inductor's packed linears follow, and IPEX's `FP32MathMode.BF32` when IPEX is already
    imported (this function never imports it).
    """
    matmul = getattr(torch.backends.mkldnn, "matmul", None)
    new_api = matmul is not None and hasattr(matmul, "fp32_precision")
    previous = matmul.fp32_precision if new_api else torch.get_float32_matmul_precision()
    ipex = sys.modules.get("intel_extension_for_pytorch")
    ipex_mode = getattr(ipex, "get_fp32_math_mode", None)
    previous_ipex = ipex_mode(device="cpu") if ipex_mode else None
    try:
        if new_api:
            matmul.fp32_precision = "bf16"
        else:
            torch.set_float32_matmul_precision("medium")
        if ipex_mode:
            ipex.set_fp32_math_mode(mode=ipex.FP32MathMode.BF32, device="cpu")
        yield
    finally:
        if new_api:
            matmul.fp32_precision = previous
        else:
            torch.set_float32_matmul_precision(previous)
        if ipex_mode:
            ipex.set_fp32_math_mode(mode=previous_ipex, device="cpu")


@contextlib.contextmanager
def jit_autocast_disabled() -> Iterator[None]:
    """Turn off TorchScript's own autocast pass, so a graph traced under autocast keeps its casts."""
    previous = torch._C._jit_set_autocast_mode(False)
    try:
        yield
    finally:
        torch._C._jit_set_autocast_mode(previous)


#: Held by every call that flips a process-wide switch (bf32's matmul precision and IPEX math mode, the
#: TorchScript autocast pass for traced bf16 graphs, Inductor's `freezing` for compiled models), from the
#: switch to its restoration: prepared models called from several threads then give the outputs each gives
#: alone, and those calls run one at a time. Calls that flip nothing (fp32, bf16 eager) do not take it.
GLOBAL_SWITCHES_LOCK = threading.RLock()


@contextlib.contextmanager
def inference_context(dtype: str | torch.dtype, traced: bool = False) -> Iterator[None]:
    """No-grad inference, under bf16 CPU autocast for "bf16", in bf32 math for "bf32"; fp32 and int8 as they are.

    Autocast runs with `cache_enabled=False`: with the weight-cast cache on, a trace
    records cached casts and fails its own check (the Trainer's setting too). Process-wide
    switches (bf32; TorchScript's autocast pass when `traced`) are restored on exit and flipped
    under `GLOBAL_SWITCHES_LOCK`.
    """
    name = precision_name(dtype)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if name == BF32:
            stack.enter_context(GLOBAL_SWITCHES_LOCK)
            stack.enter_context(fp32_matmul_in_bf16())
        elif name == "bf16":
            if traced:
                stack.enter_context(GLOBAL_SWITCHES_LOCK)
                stack.enter_context(jit_autocast_disabled())
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False))
        yield


class Bf16Autocast(torch.nn.Module):
    """Runs `inner` under CPU bf16 autocast and returns its floating-point outputs in fp32.

    Around an int8 graph this is int8-mixed-bf16: the int8 kernels take and give bf16, and the parts left
    unquantized (attention, softmax, GELU) run in bf16 instead of fp32 (PT2E's graph compiled by Inductor, IPEX's
    traced int8 graph).
    """

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, **inputs: torch.Tensor) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = self.inner(**inputs)
        return outputs_in_fp32(outputs)


def outputs_in_fp32(outputs: Any) -> Any:
    """Floating-point tensors in `outputs` (a tensor, a mapping or a ModelOutput, a tuple) as fp32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, Mapping):
        converted = type(outputs)(**{key: outputs_in_fp32(value) for key, value in outputs.items()}) \
            if hasattr(outputs, "to_tuple") else {key: outputs_in_fp32(value) for key, value in outputs.items()}
        return converted
    if isinstance(outputs, tuple):
        return tuple(outputs_in_fp32(value) for value in outputs)
    return outputs
