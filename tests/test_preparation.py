"""One place prepares every workload's modes: calibration and allow_emulated_bf16 reach the paths that honour them."""

import logging
from types import SimpleNamespace

import pytest

from cpu_inference_helpers import preparation
from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.modes import parse_mode_list


@pytest.fixture
def seen(monkeypatch):
    """The keyword options each prepare_for_inference call received, by mode name."""
    calls = {}

    def fake_prepare(model, example, mode, precision, capabilities=None, **options):
        calls[f"{mode}:{precision}"] = options
        return SimpleNamespace(record=SimpleNamespace(mode="eager"))  # not compiled: prepare_modes calls it no more

    monkeypatch.setattr(preparation, "prepare_for_inference", fake_prepare)
    return calls


def test_calibration_and_emulated_bf16_go_only_where_honoured(seen, example_batch):
    batches = [example_batch]
    specs = parse_mode_list("eager,jit:bf16,ipex+jit:int8,compile:int8,auto:int8,eager:int8")
    prepared = preparation.prepare_modes(build_random_qa_model("random-bert-tiny"), example_batch, specs,
                                         calibration=batches, allow_emulated_bf16=True, warmup_steps=1,
                                         progress=False)
    assert len(prepared) == len(specs)
    assert seen["eager:fp32"] == {"warmup_steps": 1}
    assert seen["jit:bf16"] == {"warmup_steps": 1, "allow_emulated_bf16": True}
    assert seen["ipex+jit:int8"] == {"warmup_steps": 1, "calibration": batches}
    assert seen["compile:int8"] == {"warmup_steps": 1, "calibration": batches}
    assert seen["auto:int8"] == {"warmup_steps": 1, "calibration": batches}
    assert seen["eager:int8"] == {"warmup_steps": 1}


def test_a_calibrating_mode_without_batches_says_it_measures_dynamic_int8(seen, example_batch, caplog):
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        preparation.prepare_modes(build_random_qa_model("random-bert-tiny"), example_batch,
                                  parse_mode_list("ipex+jit:int8"), progress=False)
    assert "ipex+jit:int8 was given no calibration batches" in caplog.text and seen["ipex+jit:int8"] == {}
    assert preparation.needs_calibration(parse_mode_list("eager,auto:int8"))
    assert not preparation.needs_calibration(parse_mode_list("eager,jit:int8,compile:bf16,export:int8"))
