"""Throughput with pinned instances: layouts, pinning, aggregate samples/s, failures and the command line."""

import json

import pytest
from conftest import requires_ipex

from cpu_inference_helpers.bench import throughput
from cpu_inference_helpers.bench.throughput import Layout, ThroughputSettings, measure_throughput, parse_layouts
from cpu_inference_helpers.infra.cli_logging import LogSetup
from cpu_inference_helpers.modes import parse_mode_list
from cpu_inference_helpers.techniques.capabilities import usable_cpu_count

TWO_CORES = pytest.mark.skipif(usable_cpu_count() < 2, reason="two pinned instances need two cores")


@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_layouts_are_parsed_and_checked_against_the_cores():
    assert parse_layouts("1x2, 2x1", 2) == [Layout(1, 2), Layout(2, 1)]
    with pytest.raises(ValueError, match="need more than the 2 cores"):
        parse_layouts("1x2,4x1", 2)
    for text in ("2", "0x1", "axb", ""):
        with pytest.raises(ValueError, match="layout"):
            parse_layouts(text, 8)


def _settings(**overrides) -> ThroughputSettings:
    values = dict(modes=parse_mode_list("eager,jit"), layouts=[Layout(1, 1), Layout(2, 1)], batch_sizes=[1, 2],
                  model_name_or_path="random-bert-tiny", seq_len=32, seconds=0.3)
    return ThroughputSettings(**{**values, **overrides})


@TWO_CORES
@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_instances_run_pinned_to_disjoint_cores_and_add_up():
    settings = _settings()
    rows = measure_throughput(settings, progress=False)
    assert [(r.mode, r.batch_size, r.layout) for r in rows] == [
        (mode, size, layout) for mode in ("eager", "jit") for size in (1, 2) for layout in ("1x1", "2x1")]
    for row in rows:
        assert len(row.instance_cores) == row.instances
        assert all(len(cores) == row.threads for cores in row.instance_cores)
        flat = [core for cores in row.instance_cores for core in cores]
        assert len(set(flat)) == len(flat)  # disjoint
        assert row.samples % row.batch_size == 0 and row.samples >= settings.min_batches * row.instances
        # every instance ran for at least `seconds`, so the aggregate cannot beat samples / seconds
        assert 0 < row.samples_per_second <= row.samples / settings.seconds
        assert row.p90_batch_latency_s >= row.mean_batch_latency_s * 0.5 > 0
        reference = next(r for r in rows if (r.mode, r.batch_size, r.layout) == (row.mode, row.batch_size, "1x1"))
        assert row.vs_one_instance == pytest.approx(row.samples_per_second / reference.samples_per_second)
    assert {row.ran_as for row in rows} == {"eager", "jit"}


@requires_ipex
def test_static_int8_is_calibrated_not_the_dynamic_fallback():
    """`make throughput --modes ipex+jit:int8` measures IPEX's static int8 (calibrated on other text), not the
    dynamic int8 it falls back to without calibration batches."""
    rows = measure_throughput(_settings(modes=parse_mode_list("ipex+jit:int8"), layouts=[Layout(1, 1)],
                                        batch_sizes=[1]), progress=False)
    assert [row.ran_as for row in rows] == ["ipex+jit:int8"]


@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_an_instance_that_fails_ends_the_run_with_its_reason():
    with pytest.raises(RuntimeError, match=r"layout 1x1, instance 0: .*no-such-model"):
        measure_throughput(_settings(model_name_or_path="no-such-model", layouts=[Layout(1, 1)]), progress=False)


def test_the_command_line_writes_its_files_and_refuses_bad_layouts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(LogSetup, "configure", lambda self: None)  # pytest keeps its logging
    argv = ["--model_name_or_path", "random-bert-tiny", "--modes", "eager", "--layouts", "1x1",
            "--batch_sizes", "1", "--seq_len", "32", "--seconds", "0.2", "--output_dir", str(tmp_path / "out")]
    assert throughput.main(argv) == 0
    printed = capsys.readouterr().out
    assert "samples/s" in printed and "1x1" in printed
    payload = json.loads((tmp_path / "out" / "throughput.json").read_text())
    assert payload["rows"][0]["layout"] == "1x1" and payload["metadata"]["machine"]["model_name"]
    assert (tmp_path / "out" / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        throughput.main([*argv[:-2], "--layouts", f"{usable_cpu_count() + 1}x1"])
    assert "more than the" in capsys.readouterr().err


@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_python_dash_m_runs_the_instances(tmp_path):
    """As `make throughput` runs it: the instances' answers (classes of the `__main__` module) come back whole."""
    import subprocess
    import sys

    finished = subprocess.run(
        [sys.executable, "-m", "cpu_inference_helpers.bench.throughput", "--model_name_or_path", "random-bert-tiny",
         "--modes", "eager", "--layouts", "1x1", "--batch_sizes", "1", "--seq_len", "32", "--seconds", "0.2",
         "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "throughput.json").read_text())["rows"][0]["layout"] == "1x1"
