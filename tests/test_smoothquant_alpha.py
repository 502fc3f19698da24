"""Choosing SmoothQuant's alpha on calibration-side data only."""

from types import SimpleNamespace

import pytest

from cpu_inference_helpers.models import load_offline_tokenizer
from cpu_inference_helpers.qa import smoothquant_alpha
from cpu_inference_helpers.qa.calibration import calibration_batches, load_calibration_examples
from cpu_inference_helpers.qa.data import load_examples
from cpu_inference_helpers.techniques.capabilities import inductor_compiler_available
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


def test_bad_alphas_a_bad_mode_and_a_missing_ipex_are_refused_before_any_work(monkeypatch, capsys):
    assert smoothquant_alpha.main(["--alphas", "0.5,1.5", "--model_name_or_path", "random-bert-tiny"]) == 2
    assert smoothquant_alpha.main(["--mode", "jit", "--model_name_or_path", "random-bert-tiny"]) == 2
    assert "the static int8 paths" in capsys.readouterr().err
    if not probe_ipex().usable:
        assert smoothquant_alpha.main(["--mode", "ipex+jit", "--model_name_or_path", "random-bert-tiny"]) == 2
        assert "needs IPEX" in capsys.readouterr().err
    assert smoothquant_alpha.default_static_int8_mode() == ("ipex+jit" if probe_ipex().usable else "compile")


def test_each_alpha_gets_a_row_against_fp32():
    """With this stack's static int8 path (IPEX's where usable, PT2E + compile otherwise; the sweep's default):
    the sweep is the same code for both, and the other path's build is tested in its own files on each stack
    (one sweep compiled two static int8 graphs in 60-115 s of CI on an AVX2-only EPYC)."""
    mode = smoothquant_alpha.default_static_int8_mode()
    if mode == "compile" and not inductor_compiler_available():
        pytest.skip("PT2E int8 needs torch.compile's C++ compiler")
    rows = smoothquant_alpha.sweep_alpha("random-bert-tiny", alphas=(0.5, 0.8), calibration_windows=8,
                                         max_seq_length=128, doc_stride=32, mode=mode)
    assert [row["alpha"] for row in rows] == ["fp32", 0.5, 0.8] and rows[0]["same_answers"] == 1.0
    assert [row["ran_as"] for row in rows] == ["eager", f"{mode}:int8", f"{mode}:int8"]  # the table's path
    assert all(0.0 <= row["same_answers"] <= 1.0 and 0.0 <= row["f1"] <= 100.0 for row in rows)


def test_each_alpha_is_built_by_the_tables_static_int8_path_and_a_fallback_is_an_error(monkeypatch):
    """The sweep asks the front door for ipex+jit:int8 at each alpha, and refuses a build that fell back."""
    asked = []

    def fell_back(model, example_inputs, **options):
        asked.append(options)
        return SimpleNamespace(record=SimpleNamespace(ran_as="jit:int8", summary=lambda: "jit:int8 (fell back)"))

    monkeypatch.setattr(smoothquant_alpha, "probe_ipex", lambda: SimpleNamespace(usable=True, reason=""))
    monkeypatch.setattr(smoothquant_alpha, "prepare_for_inference", fell_back)
    with pytest.raises(RuntimeError, match="static int8 was not built"):
        smoothquant_alpha.sweep_alpha("random-bert-tiny", alphas=(0.3,), calibration_windows=8, max_seq_length=128,
                                      doc_stride=32, mode="ipex+jit")
    [options] = asked
    assert (options["mode"], options["precision"], options["smooth_quant_alpha"]) == ("ipex+jit", "int8", 0.3)
    assert len(options["calibration"]) > 0
