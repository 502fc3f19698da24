"""Whether an int8 build is worth running on this CPU: timed against eager fp32 on the example inputs.

torchao's int8 (the `export:int8` path: dynamic int8 activations x int8 weights) runs its matrix products as
`torch._int_mm` (s8 x s8). On a CPU without AVX-512 VNNI or AMX those have no fast kernel: on an AVX2-only AMD
EPYC (CPU family 25 model 1, modern stack, 2026-12-07, `python -m cpu_inference_helpers.bench`, docs/benchmarks.md)
the export:int8 package of random-bert-base took 11.2 s a call against 0.57 s for eager fp32 at seq 384, batch 1
(96 s against 4.3 s at batch 8), where compile:int8 (oneDNN's u8 x s8 kernels) took 0.29 s. A flag rule would
guess; the build times itself instead, once, at set-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cpu_inference_helpers.infra.timing import time_call
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities

#: An int8 build that takes this many times eager fp32's time on the example inputs, or more, is not kept.
INT8_SLOWDOWN_LIMIT = 1.5


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
    why = ("this CPU has neither AVX-512 VNNI nor AMX, so torchao's int8 matrix products (torch._int_mm) have no "
           "fast kernel here" if not (capabilities.has_amx or capabilities.isa.get("avx512_vnni", False))
           else "its int8 kernels are slower than fp32's here")
    return (f"the int8 build took {int8_seconds / fp32_seconds:.1f}x eager fp32's time on the example inputs "
            f"({1000 * int8_seconds:.0f} against {1000 * fp32_seconds:.0f} ms): {why}")
