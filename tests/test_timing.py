import math

import pytest
import torch

from cpu_inference_helpers.infra.timing import (
    LatencyStats,
    break_even_samples,
    interleaved_latency,
    measure_latency,
    percentile,
)


def test_percentile_interpolates_like_numpy():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile([5.0], 90) == 5.0


def test_latency_stats():
    stats = LatencyStats.from_samples([0.3, 0.1, 0.2])
    assert stats.count == 3 and stats.minimum == 0.1 and stats.median == 0.2
    assert stats.total == pytest.approx(0.6) and stats.mean == pytest.approx(0.2)
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


@pytest.mark.parametrize(
    ("setup", "per_sample", "expected"),
    [(2.0, 0.5, 4.0), (0.0, 0.5, 0.0), (2.0, 1.0, math.inf), (2.0, 1.5, math.inf), (-1.0, 2.0, math.inf)],
)
def test_break_even(setup, per_sample, expected):
    # baseline: no set-up, 1 s per sample
    assert break_even_samples(setup, per_sample, 0.0, 1.0) == expected


def test_measure_latency_runs_warmup_then_repeats():
    calls = []

    def fn(x):
        calls.append(x)
        return x

    stats = measure_latency(fn, {"x": torch.zeros(1)}, warmup=3, repeats=5)
    assert len(calls) == 8 and stats.count == 5


def test_interleaved_latency_rotates_the_order():
    order = []

    def make(name):
        def fn(x):
            order.append(name)
        return fn

    stats = interleaved_latency({"a": make("a"), "b": make("b"), "c": make("c")}, {"x": 0}, warmup=1, repeats=3)
    assert order[:3] == ["a", "b", "c"]  # warm-up
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: s.count for name, s in stats.items()} == {"a": 3, "b": 3, "c": 3}
