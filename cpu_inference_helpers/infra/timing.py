"""Timing helpers: latency statistics, warm-up-aware measurement, and the trace break-even point."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in seconds."""

    count: int
    total: float
    mean: float
    median: float
    p90: float
    minimum: float

    @classmethod
    def from_samples(cls, seconds: Sequence[float]) -> LatencyStats:
        if not seconds:
            raise ValueError("no latency samples to summarise")
        ordered = sorted(seconds)
        return cls(
            count=len(ordered),
            total=math.fsum(ordered),
            mean=statistics.fmean(ordered),
            median=statistics.median(ordered),
            p90=percentile(ordered, 90),
            minimum=ordered[0],
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation (`numpy.percentile`'s default method)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    return float(np.percentile(values, q))


def time_call(fn: Callable[..., Any], inputs: Mapping[str, torch.Tensor]) -> tuple[Any, float]:
    """Run `fn(**inputs)` once and return (outputs, seconds)."""
    start = time.perf_counter()
    outputs = fn(**inputs)
    return outputs, time.perf_counter() - start


def measure_latency(
    fn: Callable[..., Any], inputs: Mapping[str, torch.Tensor], warmup: int = 2, repeats: int = 10
) -> LatencyStats:
    """Latency of `fn(**inputs)` over `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn(**inputs)
    return LatencyStats.from_samples([time_call(fn, inputs)[1] for _ in range(repeats)])


def round_robin(
    candidates: Sequence[Callable[..., Any]],
    batches: Iterable[Mapping[str, torch.Tensor]],
    on_output: Callable[[int, int, Any], None] | None = None,
) -> list[list[float]]:
    """The one timing loop: every batch through every candidate, the candidates' order rotating per batch.

    Batch `b` starts with candidate `b % len(candidates)`, so noise from other processes and drift
    (thermal, frequency) spread evenly over the candidates and their ratios stay meaningful on a shared
    machine. `on_output(candidate, batch, outputs)` sees each call's outputs, untimed (e.g. to keep the
    logits). Returns each candidate's latencies in seconds, in batch order. Warm-up is the caller's.
    """
    samples: list[list[float]] = [[] for _ in candidates]
    for batch_index, batch in enumerate(batches):
        for offset in range(len(candidates)):
            which = (batch_index + offset) % len(candidates)
            outputs, seconds = time_call(candidates[which], batch)
            samples[which].append(seconds)
            if on_output is not None:
                on_output(which, batch_index, outputs)
    return samples


def interleaved_samples(
    candidates: Mapping[str, Callable[..., Any]],
    inputs: Mapping[str, torch.Tensor],
    warmup: int = 2,
    repeats: int = 10,
) -> dict[str, list[float]]:
    """Each candidate's call latencies (seconds) on the same inputs: `warmup` untimed calls each, then
    `repeats` rounds of `round_robin` (one call of each per round, in a rotating order)."""
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name](**inputs)
    samples = round_robin([candidates[name] for name in names], [inputs] * repeats)
    return dict(zip(names, samples, strict=True))


def interleaved_latency(
    candidates: Mapping[str, Callable[..., Any]],
    inputs: Mapping[str, torch.Tensor],
    warmup: int = 2,
    repeats: int = 10,
) -> dict[str, LatencyStats]:
    """Latency statistics of several callables on the same inputs, measured round-robin (`interleaved_samples`)."""
    return {name: LatencyStats.from_samples(seconds)
            for name, seconds in interleaved_samples(candidates, inputs, warmup, repeats).items()}


def break_even_samples(
    setup_seconds: float, seconds_per_sample: float, baseline_setup: float, baseline_per_sample: float
) -> float:
    """Samples after which a path with a set-up cost (tracing) beats the baseline in total time.

    Solves setup + n * per_sample <= baseline_setup + n * baseline_per_sample for n.
    Returns 0 when the path wins from the start, and inf when it never catches up.
    """
    extra_setup = setup_seconds - baseline_setup
    saving = baseline_per_sample - seconds_per_sample
    if extra_setup <= 0:
        return 0.0 if saving >= 0 else math.inf
    if saving <= 0:
        return math.inf
    return extra_setup / saving
