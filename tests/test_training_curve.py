"""The training curve: snapshots scored on a fixed dev slice, incrementally, with a plot."""

import json

import pytest
import torch
from safetensors.torch import save_file

from cpu_inference_helpers.shipped_checkpoint import load_shipped_model, shipped_checkpoint_dir
from cpu_inference_helpers.training import curve as training_curve
from cpu_inference_helpers.training.train import save_snapshot

pytestmark = pytest.mark.stack_independent  # run on the legacy stack only (pyproject's markers)


@pytest.fixture(scope="module")
def shipped():
    return load_shipped_model()


def test_snapshots_are_scored_once_and_plotted(tmp_path, shipped, monkeypatch):
    save_snapshot(shipped, tmp_path, 10)
    damaged = load_shipped_model()
    with torch.no_grad():
        damaged.qa_outputs.weight.zero_()  # every logit equal: the answers get worse
    save_snapshot(damaged, tmp_path, 20)
    points = training_curve.measure_curve(tmp_path, questions=6, start=shipped_checkpoint_dir())
    assert [point["step"] for point in points] == [0, 10, 20]
    assert points[0]["f1"] == points[1]["f1"]  # the snapshot of the shipped weights scores as they do
    assert points[2]["f1"] < points[1]["f1"]
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert saved["questions"] == 6 and saved["points"] == points
    assert training_curve.plot_curve(points, 6, tmp_path / "curve.png").stat().st_size > 1000

    def no_scoring(*args, **kwargs):
        raise AssertionError("a snapshot already on the curve was scored again")

    monkeypatch.setattr(training_curve, "score_model", no_scoring)
    assert training_curve.measure_curve(tmp_path, questions=6, start=shipped_checkpoint_dir()) == points


def test_a_foreign_file_and_an_empty_run_are_refused(tmp_path):
    assert training_curve.main(["--output_dir", str(tmp_path)]) == 2  # no snapshots yet
    (tmp_path / "snapshots").mkdir()
    save_file({"other.weight": torch.zeros(2)}, str(tmp_path / "snapshots" / "step-000001.safetensors"))
    with pytest.raises(ValueError, match="does not hold the weights"):
        training_curve.load_snapshot(tmp_path / "snapshots" / "step-000001.safetensors")
    assert training_curve.main(["--output_dir", str(tmp_path), "--questions", "2"]) == 2


def write_curve(run_dir, steps_and_f1, questions=300):
    run_dir.mkdir(parents=True, exist_ok=True)
    points = [{"step": step, "exact_match": f1 - 5, "f1": f1} for step, f1 in steps_and_f1]
    (run_dir / "curve.json").write_text(json.dumps({"dev_file": "dev.json.xz", "questions": questions,
                                                    "points": points}))


def test_stages_chain_into_one_curve(tmp_path):
    write_curve(tmp_path / "a", [(0, 70.0), (300, 75.0), (600, 78.0)])
    write_curve(tmp_path / "b", [(600, 80.0), (0, 78.0), (1200, 81.0)])  # its step 0 is a's end
    curves = [training_curve.load_curve(tmp_path / name) for name in ("a", "b")]
    points = training_curve.chain_stages(curves, first_stage=2)
    assert [(point["step"], point["f1"], point["stage"]) for point in points] == [
        (0, 70.0, 2), (300, 75.0, 2), (600, 78.0, 2), (1200, 80.0, 3), (1800, 81.0, 3)]
    assert training_curve.plot_curve(points, 300, tmp_path / "curve.png").stat().st_size > 1000


def test_chaining_refuses_curves_from_other_slices_and_missing_ones(tmp_path, monkeypatch):
    write_curve(tmp_path / "a", [(0, 70.0), (600, 78.0)], questions=300)
    write_curve(tmp_path / "b", [(0, 78.0), (600, 80.0)], questions=1000)
    with pytest.raises(ValueError, match="different dev slices"):
        training_curve.chain_stages([training_curve.load_curve(tmp_path / name) for name in ("a", "b")])

    def no_scoring(*args, **kwargs):
        raise AssertionError("a run was scored although an earlier curve is missing")

    monkeypatch.setattr(training_curve, "measure_curve", no_scoring)
    assert training_curve.main(["--output_dir", str(tmp_path / "b"), "--after", str(tmp_path / "missing")]) == 2
