"""The one record of a measurement: what ran, its set-up, its timed calls and the samples they answered.

Every workload reports from it: the run_qa comparison (one process or Ray workers), the benchmark,
throughput and cold start build one `Measurement` per way of running, and their tables are views of it
(`ModeResult`, `PathResult`, `ThroughputRow`, `ColdStart` add what only their table shows).

    m = Measurement("jit", ran_as="jit", precision="fp32", setup_s=2.1, call_latencies_s=[0.031, 0.030], samples=16)
    m.samples_per_second, m.latency.median
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cpu_inference_helpers.infra.timing import LatencyStats


@dataclass
class Measurement:
    """One way of running the model, measured.

    `wall_s` is the wall-clock time the `samples` took; left at 0 it is the sum of the call latencies (one
    process calling back to back). Where calls overlap or wait (instances, workers) the caller measures it.
    """

    name: str  # what was asked for: a mode ("ipex+jit:bf16"), a benchmark path, a peer runtime
    ran_as: str  # what ran, after any fallback
    precision: str  # what it ran in
    fallbacks: list[str] = field(default_factory=list)
    setup_s: float = 0.0  # preparing it (optimisation, tracing, warm-up), before any timed call
    call_latencies_s: list[float] = field(default_factory=list)
    samples: int = 0  # the real samples the timed calls answered (padding excluded)
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.call_latencies_s:
            raise ValueError(f"{self.name}: a measurement needs at least one timed call")
        if self.wall_s == 0.0:
            self.wall_s = math.fsum(self.call_latencies_s)

    @property
    def latency(self) -> LatencyStats:
        """The timed calls' statistics (seconds)."""
        return LatencyStats.from_samples(self.call_latencies_s)

    @property
    def samples_per_second(self) -> float:
        """Samples over the wall-clock time they took."""
        return self.samples / self.wall_s
