"""Where the time goes: a per-operator profile of one inference path, GEMMs versus everything else.

The roofline bounds only matrix products; when a path stays far below it, the profile tells
whether the GEMMs themselves are slow or the time goes to the rest (softmax, layer norm,
GELU, casts, copies, framework overhead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from cpu_inference_helpers.infra.log_levels import quiet_profile

#: Substrings of operator names that are matrix products (ATen, oneDNN, IPEX fused linears, attention).
GEMM_MARKERS = ("linear", "matmul", "addmm", "bmm", "::mm", "mkldnn_", "ipex_prepack", "scaled_dot_product",
                "mha", "einsum", "conv")


@dataclass
class Profile:
    """Self CPU time per operator over the profiled calls, and the share spent in matrix products."""

    total_ms: float
    gemm_share: float
    top_ops: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, rows: int = 6) -> str:
        ops = ", ".join(f"{op['name']} {op['share']:.0%}" for op in self.top_ops[:rows])
        return f"{self.gemm_share:.0%} of the time in matrix products; top operators: {ops}"


def is_gemm(name: str) -> bool:
    """Whether an operator name denotes a matrix product."""
    lowered = name.lower()
    return any(marker in lowered for marker in GEMM_MARKERS)


def profile_operators(fn: Callable[..., Any], inputs: Mapping[str, torch.Tensor], calls: int = 3,
                      rows: int = 12) -> Profile:
    """Profile `calls` calls of `fn(**inputs)` (after one warm-up) and summarise self time per operator."""
    from torch.profiler import ProfilerActivity

    fn(**inputs)
    with quiet_profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(calls):
            fn(**inputs)
    events = [event for event in profiler.key_averages() if event.self_cpu_time_total > 0]
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    gemm = sum(event.self_cpu_time_total for event in events if is_gemm(event.key))
    events.sort(key=lambda event: event.self_cpu_time_total, reverse=True)
    top = [{"name": event.key, "share": event.self_cpu_time_total / total,
            "ms_per_call": event.self_cpu_time_total / 1000 / calls} for event in events[:rows]]
    return Profile(total_ms=total / 1000 / calls, gemm_share=gemm / total, top_ops=top)
