"""MKL or oneDNN for IPEX's fp32 Linear layers, decided by measuring both on this CPU.

`ipex.optimize` runs fp32 Linear layers on MKL's prepacked GEMM by default; with
`auto_kernel_selection=True` oneDNN runs them and folds the residual Add and the GELU into
the GEMM. Which is faster depends on the CPU: MKL takes a slow path on non-Intel x86, and on
Intel its GEMM is fast but unfused. Instead of guessing from the vendor, `choose_fp32_kernel`
times the model's own feed-forward block (Linear + GELU, Linear + residual Add, at the
model's hidden sizes and the example's token count) both ways, interleaved, and picks the
faster one; within `TIE_MARGIN` it keeps the vendor rule (`prefers_onednn_fp32`).

`torch.compile` makes the same choice through its shapes: at static shapes Inductor packs fp32
Linear layers for MKL, at dynamic shapes (torch 2.13) for oneDNN with the GELU and the Add
fused. `choose_compile_shapes` compiles the same block both ways and times them; static shapes
(the faster compilation) stay unless dynamic ones are more than `TIE_MARGIN` faster.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.infra.timing import interleaved_latency
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities
from cpu_inference_helpers.techniques.compiling import FreezingCompiled
from cpu_inference_helpers.techniques.ipex_support import IPEX_JIT_DEPRECATION, load_ipex, optimize_with_ipex

logger = logging.getLogger(__name__)

#: Closer than this, the two kernels count as equally fast and the vendor rule decides.
TIE_MARGIN = 0.05
#: Tokens the measured block runs at most (the GEMMs' efficiency changes little beyond this; set-up stays short).
MAX_MEASURED_TOKENS = 1024


@dataclass(frozen=True)
class KernelTiming:
    """Median latency of one feed-forward block on each fp32 kernel, measured side by side."""

    onednn_ms: float
    mkl_ms: float
    hidden_size: int
    intermediate_size: int
    tokens: int

    def describe(self) -> str:
        return (f"a {self.hidden_size}->{self.intermediate_size}->{self.hidden_size} feed-forward block on "
                f"{self.tokens} tokens took {self.onednn_ms:.2f} ms on oneDNN, {self.mkl_ms:.2f} ms on MKL")


class FeedForwardBlock(torch.nn.Module):
    """A transformer's feed-forward block: Linear + GELU, then Linear + the residual Add."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.up = torch.nn.Linear(hidden_size, intermediate_size)
        self.down = torch.nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(hidden_states))) + hidden_states


def block_inputs(hidden_size: int, tokens: int) -> dict[str, torch.Tensor]:
    """The measured block's example: one sequence of `tokens` hidden states (seeded)."""
    generator = torch.Generator().manual_seed(0)
    return {"hidden_states": torch.randn(1, tokens, hidden_size, generator=generator)}


def faster_beyond_tie(first_ms: float, second_ms: float) -> tuple[str | None, float]:
    """("first" / "second" when that one is more than `TIE_MARGIN` faster, else None; how many times faster)."""
    ratio = second_ms / first_ms
    if ratio > 1 + TIE_MARGIN:
        return "first", ratio
    if ratio < 1 / (1 + TIE_MARGIN):
        return "second", 1 / ratio
    return None, max(ratio, 1 / ratio)


@lru_cache(maxsize=16)
def measure_fp32_kernels(hidden_size: int, intermediate_size: int, tokens: int, threads: int,
                         repeats: int = 7) -> KernelTiming | None:
    """Time IPEX's oneDNN and MKL fp32 kernels on a feed-forward block (traced and frozen, as the models run).

    Returns None when IPEX is not usable or the measurement fails (logged). Cached per shape and thread
    count (`threads` is part of the key only: the caller's torch thread setting is what runs).
    """
    if load_ipex() is None:
        return None
    block = FeedForwardBlock(hidden_size, intermediate_size).eval()
    inputs = block_inputs(hidden_size, tokens)
    candidates = {}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=IPEX_JIT_DEPRECATION)  # IPEX, on every first call of a graph
            for name, onednn in (("oneDNN", True), ("MKL", False)):
                optimized = optimize_with_ipex(block, auto_kernel_selection=onednn)
                if optimized.fell_back:
                    return None
                candidates[name] = torch.jit.freeze(torch.jit.trace(optimized.model, example_kwarg_inputs=inputs))
            stats = interleaved_latency(candidates, inputs, warmup=3, repeats=repeats)
    except Exception as error:  # noqa: BLE001 - tracing or IPEX's kernels failing: the vendor rule then decides
        logger.info("could not measure IPEX's fp32 kernels: %s", error_summary(error))
        return None
    return KernelTiming(1000 * stats["oneDNN"].median, 1000 * stats["MKL"].median, hidden_size,
                        intermediate_size, tokens)


def decide_from_timing(timing: KernelTiming | None, capabilities: CpuCapabilities) -> tuple[bool, str]:
    """(use oneDNN?, the reason) from a measurement; the vendor rule where there is none or it is a tie."""
    vendor_rule = capabilities.prefers_onednn_fp32
    vendor_kernel = "oneDNN" if vendor_rule else "MKL"
    vendor_why = (f"{vendor_kernel}, the vendor rule for {capabilities.vendor or 'this CPU'} "
                  f"({'MKL is slow on non-Intel x86' if vendor_rule else 'MKL is fast on Intel'})")
    if timing is None:
        return vendor_rule, f"fp32 kernel: {vendor_why}, not measured (no transformer feed-forward sizes or no IPEX)"
    winner, times = faster_beyond_tie(timing.onednn_ms, timing.mkl_ms)
    if winner == "first":
        return True, f"fp32 kernel: oneDNN, {times:.2f}x as fast as MKL here: {timing.describe()}"
    if winner == "second":
        return False, f"fp32 kernel: MKL, {times:.2f}x as fast as oneDNN here: {timing.describe()}"
    return vendor_rule, f"fp32 kernel: {vendor_why}, as both are within {TIE_MARGIN:.0%} here: {timing.describe()}"


def feed_forward_sizes(model: torch.nn.Module) -> tuple[int, int] | None:
    """(hidden size, intermediate size) of a transformers model's feed-forward blocks, or None."""
    config = getattr(model, "config", None)
    hidden, intermediate = getattr(config, "hidden_size", None), getattr(config, "intermediate_size", None)
    if isinstance(hidden, int) and isinstance(intermediate, int) and hidden > 0 and intermediate > 0:
        return hidden, intermediate
    return None


def example_tokens(example_inputs: Mapping[str, torch.Tensor] | Any) -> int | None:
    """Tokens per call in the example batch (batch x sequence length of its first 2-D tensor), or None."""
    tensors = example_inputs.values() if isinstance(example_inputs, Mapping) else example_inputs
    for tensor in tensors:
        if isinstance(tensor, torch.Tensor) and tensor.dim() == 2:
            return int(tensor.numel())
    return None


def measured_block_shape(model: torch.nn.Module, example_inputs: Any) -> tuple[int, int, int] | None:
    """(hidden size, intermediate size, tokens capped at `MAX_MEASURED_TOKENS`) to measure `model` at, or None."""
    sizes, tokens = feed_forward_sizes(model), example_tokens(example_inputs)
    if sizes is None or not tokens:
        return None
    return (*sizes, min(tokens, MAX_MEASURED_TOKENS))


def choose_fp32_kernel(model: torch.nn.Module, example_inputs: Any, capabilities: CpuCapabilities) -> tuple[bool, str]:
    """Whether IPEX should run `model`'s fp32 Linear layers on oneDNN (True) or MKL (False), and why.

    Measured on this CPU with the model's feed-forward sizes at the example's token count (capped at
    `MAX_MEASURED_TOKENS`); the vendor rule where the model has no such sizes or IPEX is not usable.
    """
    shape = measured_block_shape(model, example_inputs)
    timing = measure_fp32_kernels(*shape, torch.get_num_threads()) if shape else None
    use_onednn, reason = decide_from_timing(timing, capabilities)
    logger.info("%s", reason)
    return use_onednn, reason


@dataclass(frozen=True)
class CompileShapeTiming:
    """Median latency of one feed-forward block compiled (Inductor, freezing) at static and at dynamic shapes."""

    static_ms: float
    dynamic_ms: float
    hidden_size: int
    intermediate_size: int
    tokens: int

    def describe(self) -> str:
        return (f"a {self.hidden_size}->{self.intermediate_size}->{self.hidden_size} feed-forward block on "
                f"{self.tokens} tokens, compiled, took {self.static_ms:.2f} ms at static shapes, "
                f"{self.dynamic_ms:.2f} ms at dynamic shapes")


@lru_cache(maxsize=16)
def measure_compile_shapes(hidden_size: int, intermediate_size: int, tokens: int, threads: int,
                           repeats: int = 7) -> CompileShapeTiming | None:
    """Time a feed-forward block compiled by Inductor with freezing at static and at dynamic shapes (fp32).

    Returns None when compiling fails (no C++ compiler, an Inductor error; logged). Cached per shape and
    thread count (`threads` is part of the key only). Costs two small compilations (a few seconds).
    """
    inputs = block_inputs(hidden_size, tokens)
    candidates = {}
    try:
        with torch.no_grad():
            for name, dynamic in (("static", False), ("dynamic", True)):
                block = FeedForwardBlock(hidden_size, intermediate_size).eval()  # one per compilation: own weights
                candidates[name] = FreezingCompiled(torch.compile(block, backend="inductor", dynamic=dynamic),
                                                    freezing=True)
            stats = interleaved_latency(candidates, inputs, warmup=3, repeats=repeats)
    except Exception as error:  # noqa: BLE001 - compilers fail in many types; the static default then stands
        logger.info("could not measure torch.compile's fp32 shapes: %s", error_summary(error))
        return None
    return CompileShapeTiming(1000 * stats["static"].median, 1000 * stats["dynamic"].median, hidden_size,
                              intermediate_size, tokens)


def decide_compile_shapes(timing: CompileShapeTiming | None) -> tuple[bool, str]:
    """(compile for dynamic shapes?, the reason) from a measurement; static shapes without one or on a tie."""
    if timing is None:
        return False, ("compile fp32: static shapes, not measured (no transformer feed-forward sizes, "
                       "or compiling the measured block failed)")
    winner, times = faster_beyond_tie(timing.dynamic_ms, timing.static_ms)
    if winner == "first":
        return True, f"compile fp32: dynamic shapes, {times:.2f}x as fast as static here: {timing.describe()}"
    if winner == "second":
        return False, f"compile fp32: static shapes, {times:.2f}x as fast as dynamic here: {timing.describe()}"
    return False, (f"compile fp32: static shapes (compile faster), as both are within {TIE_MARGIN:.0%} here: "
                   f"{timing.describe()}")


def choose_compile_shapes(model: torch.nn.Module, example_inputs: Any) -> tuple[bool, str]:
    """Whether `compile_model` should compile `model` in fp32 for dynamic shapes (True) or static ones, and why.

    Measured on this CPU with the model's feed-forward sizes at the example's token count (capped at
    `MAX_MEASURED_TOKENS`); static shapes where the model has no such sizes or the measurement fails.
    """
    shape = measured_block_shape(model, example_inputs)
    timing = measure_compile_shapes(*shape, torch.get_num_threads()) if shape else None
    dynamic, reason = decide_compile_shapes(timing)
    logger.info("%s", reason)
    return dynamic, reason
