"""The training curve: snapshots scored on a fixed dev slice, incrementally, with a plot."""

import json

import pytest
import torch
from safetensors.torch import save_file

from cpu_inference_helpers.shipped_checkpoint import load_shipped_model, shipped_checkpoint_dir
from cpu_inference_helpers.training import curve as training_curve
from cpu_inference_helpers.training.train import save_snapshot


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
