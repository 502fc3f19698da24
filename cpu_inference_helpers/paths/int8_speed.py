"""Whether an int8 build is worth running on this CPU: timed against eager fp32 on the example inputs.

torchao's int8 (the `export:int8` path: dynamic int8 activations x int8 weights) runs its matrix products as
`torch._int_mm` (s8 x s8). On a CPU without AVX-512 VNNI or AMX those have no fast kernel: on an AVX2-only AMD
EPYC (CPU family 25 model 1, modern stack, 2026-12-07, `python -m cpu_inference_helpers.bench`, docs/benchmarks.md)
the export:int8 package of random-bert-base took 11.2 s a call against 0.57 s for eager fp32 at seq 384, batch 1
(96 s against 4.3 s at batch 8), where compile:int8 (oneDNN's u8 x s8 kernels) took 0.29 s. A flag rule would
guess; the build times itself instead, once, at set-up.

Building that package takes minutes on such a CPU (127 s for the MiniLM checkpoint at seq 128, modern stack, same
EPYC, 2026-12-07), so first one product of the model's own Linear shape is timed, `torch._int_mm` against fp32's
`torch.mm` (milliseconds): where int8 takes `KERNEL_SLOWDOWN_LIMIT` times fp32's time or more, the package is not
built at all. The probe's margin is wider than the package's: a small product times noisily, and the package is
timed as well when the probe lets it through.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cpu_inference_helpers.infra.timing import measure_latency, time_call
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities

#: An int8 build that takes this many times eager fp32's time on the example inputs, or more, is not kept.
INT8_SLOWDOWN_LIMIT = 1.5
#: An int8 product (`torch._int_mm`) that takes this many times fp32's `torch.mm`, or more, stops the build first.
KERNEL_SLOWDOWN_LIMIT = 3.0
#: The probe's product: 256 rows (tokens) against the model's first weight matrix, each side at least 256 wide
#: (smaller products time the call's overhead, not the kernel).
PROBE_ROWS = 256
PROBE_MIN_WIDTH = 256


def int8_slowdown_problem(int8_model: Callable[..., Any], fp32_model: Callable[..., Any],
                          inputs: Mapping[str, torch.Tensor], capabilities: CpuCapabilities,
                          limit: float = INT8_SLOWDOWN_LIMIT) -> str | None:
    """Why `int8_model` (already warmed up) is not worth running here, or None when it is.

    It is not when it takes `limit` times the time of `fp32_model` (eager fp32) on `inputs` or more: eager is timed
    twice (the first call is its warm-up), the int8 model once, and a second time when that call is over the limit
    by less than 2x, so that one slow call on a busy machine does not decide alone.
    """
    with torch.no_grad():
        time_call(fp32_model, inputs)
        fp32 = time_call(fp32_model, inputs)[1]
        int8 = time_call(int8_model, inputs)[1]
        if limit * fp32 <= int8 < 2 * limit * fp32:  # near the limit: once more (at 20x, once is enough)
            int8 = min(int8, time_call(int8_model, inputs)[1])
    return slowdown_verdict(int8, fp32, capabilities, limit)


def slowdown_verdict(int8_seconds: float, fp32_seconds: float, capabilities: CpuCapabilities,
                     limit: float = INT8_SLOWDOWN_LIMIT) -> str | None:
    """The reason an int8 build timed at `int8_seconds` against eager fp32's `fp32_seconds` is not kept, or None."""
    if int8_seconds < limit * fp32_seconds:
        return None
    return (f"the int8 build took {int8_seconds / fp32_seconds:.1f}x eager fp32's time on the example inputs "
            f"({1000 * int8_seconds:.0f} against {1000 * fp32_seconds:.0f} ms): {_why_slow(capabilities)}")


def int8_kernel_problem(model: torch.nn.Module, capabilities: CpuCapabilities,
                        limit: float = KERNEL_SLOWDOWN_LIMIT) -> str | None:
    """Why torchao's int8 products are not worth building here, or None: `torch._int_mm` timed against fp32's
    `torch.mm` on one product of the shape of `model`'s first Linear layer (`PROBE_ROWS` rows), before any build."""
    linear = next((module for module in model.modules() if isinstance(module, torch.nn.Linear)), None)
    if linear is None:
        return None
    rows, inner, outer = PROBE_ROWS, _probe_width(linear.in_features), _probe_width(linear.out_features)
    try:
        int8_seconds, fp32_seconds = product_seconds(rows, inner, outer)
    except RuntimeError as error:  # no int8 product kernel at all in this build of torch
        return f"torch._int_mm failed on a {rows}x{inner} by {inner}x{outer} product here: {error}"
    return kernel_verdict(int8_seconds, fp32_seconds, (rows, inner, outer), capabilities, limit)


def kernel_verdict(int8_seconds: float, fp32_seconds: float, shape: tuple[int, int, int],
                   capabilities: CpuCapabilities, limit: float = KERNEL_SLOWDOWN_LIMIT) -> str | None:
    """The reason a `torch._int_mm` timed at `int8_seconds` against `torch.mm`'s `fp32_seconds` on a product of
    `shape` (rows, inner, outer) stops an int8 build, or None."""
    if int8_seconds < limit * fp32_seconds:
        return None
    rows, inner, outer = shape
    return (f"torch._int_mm took {int8_seconds / fp32_seconds:.1f}x fp32 torch.mm's time on a {rows}x{inner} by "
            f"{inner}x{outer} product ({1000 * int8_seconds:.2f} against {1000 * fp32_seconds:.2f} ms), so the "
            f"int8 package was not built: {_why_slow(capabilities)}")


@functools.lru_cache(maxsize=16)
def product_seconds(rows: int, inner: int, outer: int, calls: int = 5) -> tuple[float, float]:
    """The fastest of `calls` timed calls (after one untimed) of `torch._int_mm` and of fp32 `torch.mm` on a
    (rows x inner) by (inner x outer) product; measured once per shape and process."""
    generator = torch.Generator().manual_seed(0)
    int8 = {"input": torch.randint(-128, 128, (rows, inner), dtype=torch.int8, generator=generator),
            "mat2": torch.randint(-128, 128, (inner, outer), dtype=torch.int8, generator=generator)}
    fp32 = {"input": torch.randn(rows, inner, generator=generator),
            "mat2": torch.randn(inner, outer, generator=generator)}
    return (measure_latency(torch._int_mm, int8, warmup=1, repeats=calls).minimum,
            measure_latency(torch.mm, fp32, warmup=1, repeats=calls).minimum)


def _probe_width(size: int) -> int:
    return max(PROBE_MIN_WIDTH, -(-size // 8) * 8)  # a multiple of 8


def _why_slow(capabilities: CpuCapabilities) -> str:
    if not capabilities.has_int8_dot_product:
        return ("this CPU has neither AVX-512 VNNI nor AMX, so torchao's int8 matrix products (torch._int_mm) have "
                "no fast kernel here")
    return "its int8 kernels are slower than fp32's here"
