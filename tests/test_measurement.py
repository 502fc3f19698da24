"""The one measurement record: samples over the wall clock, the call statistics, no empty measurement."""

import pytest

from cpu_inference_helpers.infra.measurement import Measurement


def test_one_process_calling_back_to_back_takes_the_sum_of_its_calls():
    measured = Measurement("jit", "jit", "fp32", call_latencies_s=[0.5, 0.25, 0.25], samples=12)
    assert measured.wall_s == 1.0 and measured.samples_per_second == 12.0
    assert measured.latency.median == 0.25 and measured.latency.count == 3


def test_a_measured_wall_clock_wins_over_the_calls_sum():
    """Two instances running side by side: 2 s of calls in 1 s of wall clock, twice the one-process rate."""
    measured = Measurement("eager", "eager", "fp32", call_latencies_s=[0.5] * 4, samples=8, wall_s=1.0)
    assert measured.samples_per_second == 8.0


def test_a_measurement_without_calls_is_refused():
    with pytest.raises(ValueError, match="eager: a measurement needs at least one timed call"):
        Measurement("eager", "eager", "fp32", samples=0)
