"""Hostile but realistic inputs to the run_qa CLI: each fails early and clearly, or runs correctly.

Each test names the finding it covers; every one of them failed before its fix (a traceback
after the whole evaluation, a panic in the tokenizer, a silent wrong answer or lost outputs).
"""

import json
import os
from pathlib import Path

import pytest
from transformers import BertConfig, BertModel

from cpu_inference_helpers import run_qa
from cpu_inference_helpers.infra.output_files import prepare_output_dir
from cpu_inference_helpers.models import load_offline_tokenizer, load_qa_model_and_tokenizer
from cpu_inference_helpers.qa import evaluation
from cpu_inference_helpers.qa.data import parse_squad
from cpu_inference_helpers.qa.features import prepare_validation_features

TINY = ["--do_eval", "--model_name_or_path", "random-bert-tiny", "--per_device_eval_batch_size", "4",
        "--modes", "eager"]
CONTEXT = "Ada Lovelace wrote the first program for the Analytical Engine in 1843, long before computers."


def write_records(path: Path, questions: list[str], answers: list | None = None) -> Path:
    records = []
    for index, question in enumerate(questions):
        record = {"id": str(index), "question": question, "context": CONTEXT}
        if answers is not None:
            record["answers"] = answers
        records.append(record)
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def evaluation_spy(monkeypatch):
    """Counts calls to the evaluation, so a test can show an error came before the heavy work."""
    calls = []
    original = evaluation.compare_modes

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation, "compare_modes", spy)
    return calls


@pytest.mark.parametrize("answers", [None, [], {"text": [], "answer_start": []}],
                         ids=["no-answers", "empty-answers", "squad-v2-unanswerable"])
def test_no_scorable_answer_is_refused_before_evaluating(tmp_path, capsys, evaluation_spy, answers):
    data = write_records(tmp_path / "unscorable.json", ["Who wrote it?", "When?"], answers)
    output = tmp_path / "out"
    assert run_qa.main([*TINY, "--validation_file", str(data), "--output_dir", str(output)]) == 2
    assert "none of the 2 questions has a gold answer" in capsys.readouterr().err
    assert not evaluation_spy and not list(output.glob("*.json"))


def test_a_question_longer_than_the_window_allows_is_cut_and_recorded(tmp_path):
    answers = [{"text": "Ada Lovelace", "answer_start": 0}]
    long_question = "Which person, " + "according to the long account given here, " * 40 + "wrote it?"
    data = write_records(tmp_path / "long.json", [long_question, "Who wrote it?"], answers)
    output = tmp_path / "out"
    assert run_qa.main([*TINY, "--validation_file", str(data), "--output_dir", str(output)]) == 0
    metadata = json.loads((output / "results.json").read_text())["metadata"]
    assert metadata["truncated_questions"] == ["0"]


@pytest.mark.parametrize(("length", "stride"), [(384, 380), (64, 60), (600, 550)])
def test_window_settings_the_tokenizer_rejects_get_a_clear_error(tmp_path, capsys, evaluation_spy, length, stride):
    data = write_records(tmp_path / "d.json", ["Who wrote the first program for the engine?"],
                         [{"text": "Ada Lovelace", "answer_start": 0}])
    status = run_qa.main([*TINY, "--validation_file", str(data), "--output_dir", str(tmp_path / "o"),
                          "--max_seq_length", str(length), "--doc_stride", str(stride)])
    assert status == 2 and not evaluation_spy
    error = capsys.readouterr().err
    assert "doc_stride" in error and "max_seq_length" in error


def test_fit_questions_keeps_the_tokenizer_from_panicking():
    tokenizer = load_offline_tokenizer()
    examples = parse_squad([{"id": "q", "question": "word " * 300, "context": CONTEXT * 20}])
    features = prepare_validation_features(examples, tokenizer, max_seq_length=384, doc_stride=128)
    assert features.truncated_questions == ["q"] and len(features) > 1
    assert features.inputs["input_ids"].shape[1] == 384


def test_max_seq_length_is_clamped_to_the_model_positions_and_reported(tmp_path, capsys):
    loaded = load_qa_model_and_tokenizer("random-bert-tiny")
    folder = tmp_path / "model"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("model_max_length", None)  # a tokenizer saved without its limit
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    data = write_records(tmp_path / "d.json", ["Who wrote it?"], [{"text": "Ada Lovelace", "answer_start": 0}])
    output = tmp_path / "out"
    argv = ["--do_eval", "--model_name_or_path", str(folder), "--validation_file", str(data),
            "--output_dir", str(output), "--modes", "eager", "--max_seq_length", "600"]
    assert run_qa.main(argv) == 0
    metadata = json.loads((output / "results.json").read_text())["metadata"]
    assert metadata["max_seq_length"] == 512 and metadata["max_seq_length_requested"] == 600
    assert "seq 512" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["existing-file", "below-a-file", "under-proc"])
def test_unusable_output_dir_fails_before_evaluating(tmp_path, capsys, evaluation_spy, kind):
    existing = tmp_path / "a-file"
    existing.write_text("x")
    target = {"existing-file": existing, "below-a-file": existing / "sub",
              "under-proc": Path("/proc/cpu-inference-tutorial")}[kind]
    if kind == "under-proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    assert run_qa.main([*TINY, "--max_eval_samples", "2", "--max_seq_length", "128", "--doc_stride", "32",
                        "--output_dir", str(target)]) == 2
    assert "--output_dir" in capsys.readouterr().err and not evaluation_spy


def test_a_failed_write_leaves_the_previous_outputs_whole(tmp_path, monkeypatch, capsys):
    output = tmp_path / "out"
    argv = [*TINY, "--max_eval_samples", "2", "--max_seq_length", "128", "--doc_stride", "32",
            "--output_dir", str(output)]
    assert run_qa.main(argv) == 0
    before = {str(path.relative_to(output)): path.read_bytes() for path in output.rglob("*") if path.is_file()}
    assert {"results.json", "results.csv", "predictions.json", "comparison.png", "eager/eval_results.json"} <= set(
        before
    )

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluation, "plot_results", disk_full)  # one of the files fails
    assert run_qa.main(argv) == 2
    assert "earlier results there are unchanged" in capsys.readouterr().err
    after = {str(path.relative_to(output)): path.read_bytes() for path in output.rglob("*") if path.is_file()}
    assert after == before  # all old, none half-new, no temporaries left


def test_a_model_without_a_qa_head_is_refused(tmp_path, capsys, evaluation_spy):
    encoder = BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128))
    folder = tmp_path / "plain-bert"
    encoder.save_pretrained(folder)
    load_offline_tokenizer().save_pretrained(folder)
    assert run_qa.main(["--do_eval", "--model_name_or_path", str(folder), "--max_eval_samples", "2",
                        "--output_dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "qa_outputs" in error and "not a question-answering checkpoint" in error and not evaluation_spy


def test_output_dir_write_probe_leaves_nothing_behind(tmp_path):
    folder = prepare_output_dir(tmp_path / "new" / "nested")
    assert folder.is_dir() and os.listdir(folder) == []


# int8 calibration: refused before the model loads when it cannot be used or would flatter the accuracy.
INT8 = ["--do_eval", "--model_name_or_path", "random-bert-tiny", "--per_device_eval_batch_size", "4",
        "--max_seq_length", "64", "--doc_stride", "16", "--max_eval_samples", "4", "--modes", "eager:int8"]


def test_missing_calibration_file_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    loads = []
    monkeypatch.setattr(evaluation, "load_qa_model_and_tokenizer", lambda *a, **k: loads.append(1))
    status = run_qa.main([*INT8, "--calibration_file", str(tmp_path / "nowhere.json"), "--output_dir",
                          str(tmp_path / "o")])
    assert status == 2 and "nowhere.json" in capsys.readouterr().err and not loads


def test_calibrating_on_the_evaluated_questions_is_refused(tmp_path, capsys, evaluation_spy):
    data = write_records(tmp_path / "dev.json", ["Who wrote the first program?"],
                         [{"text": "Ada Lovelace", "answer_start": 0}])
    status = run_qa.main([*INT8, "--validation_file", str(data), "--calibration_file", str(data),
                          "--output_dir", str(tmp_path / "o")])
    assert status == 2 and "shares 1 question ids" in capsys.readouterr().err and not evaluation_spy


def test_calibration_windows_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        run_qa.main([*INT8, "--calibration_windows", "0"])
    assert "--calibration_windows must be at least 1" in capsys.readouterr().err


def test_an_int8_mode_runs_end_to_end_and_records_what_it_ran(tmp_path):
    assert run_qa.main([*INT8, "--calibration_windows", "4", "--output_dir", str(tmp_path)]) == 0
    results = {r["name"]: r for r in json.loads((tmp_path / "results.json").read_text())["results"]}
    assert results["eager:int8"]["ran_as"] == "eager:int8"
    assert (tmp_path / "eager-int8" / "eval_results.json").exists()


# --- the library and the benchmark (issue 33, item 6) ---------------------------------------------------------

@pytest.mark.parametrize(("inputs", "message"), [
    ({"input_ids": "torch.tensor(5)"}, "has shape (): token inputs are (batch, sequence)"),
    ({"input_ids": "torch.zeros(1, 0, dtype=torch.long)"}, "at least one token"),
    ({"input_ids": "[[101, 102]]"}, "is a list, not a tensor"),
    ({}, "example_inputs is empty"),
])
def test_example_inputs_that_are_no_batch_get_a_clear_error_before_any_work(inputs, message, monkeypatch):
    import torch

    from cpu_inference_helpers import optimize
    from cpu_inference_helpers.models import build_random_qa_model

    def no_build(*args, **kwargs):
        raise AssertionError("a path was built for a bad example")

    monkeypatch.setattr(optimize, "_build_one", no_build)
    inputs = {name: eval(text, {"torch": torch}) for name, text in inputs.items()}  # noqa: S307 - test literals
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        optimize.prepare_for_inference(build_random_qa_model("random-bert-tiny"), inputs, mode="jit")


@pytest.mark.parametrize("text", [b"processor : 0\nflags : avx2\n", bytearray(b"flags : avx2"), 42])
def test_cpuinfo_that_is_not_text_is_refused_with_the_fix(text):
    from cpu_inference_helpers.techniques.capabilities import detect_capabilities

    with pytest.raises(ValueError, match="must be the text of a /proc/cpuinfo as a str") as raised:
        detect_capabilities(text)
    assert ("decode it first" in str(raised.value)) == isinstance(text, (bytes, bytearray))


def test_a_branch_on_float_input_values_is_not_traced_into_wrong_answers(caplog):
    """`x * 2 if x.sum() > 0 else x - 100` traced on all ones would answer x * 2 for negative x too."""
    import logging

    import torch

    from cpu_inference_helpers.optimize import prepare_for_inference

    class Branching(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x - 100

    model = Branching()
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(model, {"x": torch.ones(2, 3)}, mode="jit")
    assert ready.record.mode == "eager" and ready.record.fallbacks[0].step == "jit"
    assert "TracerWarning" in ready.record.fallbacks[0].reason and "another input" in ready.record.fallbacks[0].reason
    assert "Using the eager model" in caplog.text
    negative = -torch.ones(2, 3)
    assert torch.equal(ready(x=negative), negative - 100)


def test_bench_refuses_a_sequence_longer_than_the_model_takes_before_any_work(monkeypatch, capsys, tmp_path):
    from cpu_inference_helpers.bench import __main__ as bench_main

    def no_work(*args, **kwargs):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(bench_main, "run_shape_in_subprocess", no_work)
    monkeypatch.setattr(bench_main, "measure_matmul_peak", no_work)
    with pytest.raises(SystemExit) as raised:
        bench_main.main(["--model_name_or_path", "random-bert-tiny", "--shapes", "128x1,100000x1",
                         "--output_dir", str(tmp_path / "bench")])
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "100000x1" in error and "at most 512 tokens" in error and "128x1" not in error.split("--shapes")[1]
    assert not (tmp_path / "bench").exists()
