"""Choosing SmoothQuant's alpha on calibration-side data only."""

import pytest

from cpu_inference_helpers.models import load_offline_tokenizer
from cpu_inference_helpers.qa import smoothquant_alpha
from cpu_inference_helpers.qa.calibration import calibration_batches, load_calibration_examples
from cpu_inference_helpers.qa.data import load_examples
from cpu_inference_helpers.techniques.ipex_support import probe_ipex


def test_the_judged_questions_are_neither_calibrated_on_nor_scored():
    tokenizer, examples = load_offline_tokenizer(), load_calibration_examples()
    held_out = smoothquant_alpha.held_out_questions(examples, tokenizer, 16, 128, 32)
    calibrated = calibration_batches(examples, tokenizer, 128, 32, windows=16)
    first_unused = examples.index(held_out[0])
    assert 0 < first_unused and len(held_out) == len(examples) - first_unused
    assert sum(len(batch["input_ids"]) for batch in calibrated) == 16
    dev_ids = {example.id for example in load_examples()[0]}
    assert not dev_ids & {example.id for example in examples}


def test_bad_alphas_and_a_missing_ipex_are_refused_before_any_work(monkeypatch):
    if probe_ipex().usable:
        assert smoothquant_alpha.main(["--alphas", "0.5,1.5", "--model_name_or_path", "random-bert-tiny"]) == 2
    else:
        assert smoothquant_alpha.main(["--model_name_or_path", "random-bert-tiny"]) == 2


@pytest.mark.skipif(not probe_ipex().usable, reason="IPEX's static int8 (legacy stack)")
def test_each_alpha_gets_a_row_against_fp32():
    rows = smoothquant_alpha.sweep_alpha("random-bert-tiny", alphas=(0.5, 0.8), calibration_windows=8,
                                         max_seq_length=128, doc_stride=32)
    assert [row["alpha"] for row in rows] == ["fp32", 0.5, 0.8] and rows[0]["same_answers"] == 1.0
    assert all(0.0 <= row["same_answers"] <= 1.0 and 0.0 <= row["f1"] <= 100.0 for row in rows)
