import contextlib
import csv
import io
import json
import re

import numpy as np
import pytest
import torch
from conftest import requires_ipex

from cpu_inference_helpers import run_qa
from cpu_inference_helpers.modes import ModeSpec, parse_mode_list
from cpu_inference_helpers.qa.evaluation import EvaluationSettings
from cpu_inference_helpers.run_qa import RunQaFlags, build_parser, main, resolve_modes
from cpu_inference_helpers.techniques import ipex_support
from cpu_inference_helpers.techniques.capabilities import cached_capabilities

TINY = ["--do_eval", "--model_name_or_path", "random-bert-tiny", "--max_eval_samples", "12",
        "--max_seq_length", "128", "--doc_stride", "32", "--per_device_eval_batch_size", "4"]


@pytest.fixture(scope="module")
def comparison_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("qa")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main([*TINY, "--output_dir", str(output), "--modes", "eager,jit,ipex,ipex+jit,export,jit:bf16"])
    return status, output, printed.getvalue()


def test_writes_table_json_csv_and_plot(comparison_run):
    status, output, table = comparison_run
    assert status == 0
    payload = json.loads((output / "results.json").read_text())
    names = [r["name"] for r in payload["results"]]
    assert names == ["eager", "jit", "ipex", "ipex+jit", "export", "jit:bf16"]
    assert payload["metadata"]["random_weights"] is True and payload["metadata"]["questions"] == 12
    assert payload["metadata"]["threads"] >= 1
    rows = list(csv.DictReader((output / "results.csv").open()))
    assert [r["name"] for r in rows] == names
    assert (output / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = json.loads((output / "predictions.json").read_text())
    assert set(predictions) == set(names) and len(predictions["eager"]) == 12
    samples = payload["metadata"]["samples"]
    assert samples >= 12
    for result in payload["results"]:
        assert result["samples"] == samples
        assert len(result["batch_latencies_s"]) == -(-samples // 4)  # one latency per batch of 4
        assert result["p90_batch_latency_s"] >= min(result["batch_latencies_s"]) > 0
        assert result["samples_per_second"] == pytest.approx(samples / sum(result["batch_latencies_s"]))
    assert "EM" in table and "break-even" in table and "random weights" in table


def test_writes_run_qa_files_per_mode(comparison_run):
    """run_qa.py's own outputs (utils_qa's prediction files, the Trainer's eval_results.json), one folder per mode."""
    _, output, _ = comparison_run
    ours = json.loads((output / "predictions.json").read_text())
    payload = {r["name"]: r for r in json.loads((output / "results.json").read_text())["results"]}
    for name, folder in [("eager", "eager"), ("ipex+jit", "ipex+jit"), ("jit:bf16", "jit-bf16")]:
        predictions = json.loads((output / folder / "eval_predictions.json").read_text())
        nbest = json.loads((output / folder / "eval_nbest_predictions.json").read_text())
        metrics = json.loads((output / folder / "eval_results.json").read_text())
        assert predictions == ours[name] and list(predictions) == list(nbest)
        for question, entries in nbest.items():
            assert entries[0]["text"] == predictions[question] and 1 <= len(entries) <= 20
            assert list(entries[0]) == ["start_logit", "end_logit", "text", "probability"]
            assert sum(entry["probability"] for entry in entries) == pytest.approx(1.0, abs=1e-6)
            scores = [entry["start_logit"] + entry["end_logit"] for entry in entries]
            assert scores == sorted(scores, reverse=True)
        assert sorted(metrics) == ["eval_exact_match", "eval_f1", "eval_runtime", "eval_samples",
                                   "eval_samples_per_second", "eval_steps_per_second"]
        assert metrics["eval_f1"] == payload[name]["f1"] and metrics["eval_samples"] == payload[name]["samples"]
        assert metrics["eval_samples_per_second"] == pytest.approx(payload[name]["samples_per_second"], abs=1e-3)


def test_eval_results_count_the_wall_clock_that_results_json_counts(tmp_path):
    """On Ray two workers' batches overlap: 3 s of batches in 2 s of wall clock is 5 samples/s, not 3.3."""
    from cpu_inference_helpers.infra.output_files import staged_outputs
    from cpu_inference_helpers.qa.comparison import ModeResult
    from cpu_inference_helpers.qa.evaluation import write_run_qa_files

    result = ModeResult("eager", "eager", "fp32", "eager", [], 50.0, 60.0, samples=10, samples_per_second=5.0,
                        mean_batch_latency_s=1.5, p90_batch_latency_s=1.5, setup_s=0.0, batch_latencies_s=[1.5, 1.5])
    with staged_outputs(tmp_path) as stage:
        write_run_qa_files(stage, result, {"q1": "an answer"}, {"q1": []})
    metrics = json.loads((tmp_path / "eager" / "eval_results.json").read_text())
    timing = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
    assert [metrics[key] for key in timing] == [2.0, 5.0, 1.0]


def test_fp32_modes_give_the_same_answers_as_eager(comparison_run):
    _, output, _ = comparison_run
    results = {r["name"]: r for r in json.loads((output / "results.json").read_text())["results"]}
    for name in ("jit", "ipex", "ipex+jit", "export"):  # export: the comparison runs the loaded package
        assert results[name]["same_answers_as_eager"] == 1.0
        assert results[name]["max_logit_diff_vs_eager"] < 1e-4
        assert results[name]["exact_match"] == results["eager"]["exact_match"]
    if cached_capabilities().native_bf16:
        assert results["jit:bf16"]["max_logit_diff_vs_eager"] > 0  # bf16 does change the numbers
    else:  # emulated bf16 is refused (an AVX2-only CPU): fp32 ran, said so, and gave eager's numbers
        assert results["jit:bf16"]["ran_as"] == "jit" and "no native bf16" in results["jit:bf16"]["fallbacks"][0]
        assert results["jit:bf16"]["max_logit_diff_vs_eager"] < 1e-4


def test_ipex_modes_report_the_fallback_when_ipex_is_missing(tmp_path, monkeypatch, fresh_ipex_probe, capsys):
    monkeypatch.setenv(ipex_support.DISABLE_ENV_VAR, "1")
    ipex_support.probe_ipex(refresh=True)
    assert main([*TINY, "--max_eval_samples", "4", "--output_dir", str(tmp_path), "--modes", "ipex+jit"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert results[1]["name"] == "ipex+jit" and results[1]["ran_as"] == "jit"
    assert results[1]["fallbacks"][0].startswith("ipex: ")
    assert "fallback in ipex+jit" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--jit_mode_eval"], [ModeSpec("jit")]),
        (["--use_ipex"], [ModeSpec("ipex")]),
        (["--jit_mode_eval", "--use_ipex", "--bf16"], [ModeSpec("ipex+jit", "bf16")]),
        (["--bf16"], [ModeSpec("eager", "bf16")]),
        (["--torch_compile", "--bf16"], [ModeSpec("compile", "bf16")]),
        (["--modes", "jit,ipex_jit:bf16"], [ModeSpec("jit"), ModeSpec("ipex+jit", "bf16")]),
    ],
)
def test_trainer_flags_map_to_modes(flags, expected):
    parser = build_parser()
    assert resolve_modes(parser.build(RunQaFlags, parser.parse_args(["--do_eval", *flags]))) == expected


@pytest.mark.parametrize("ipex_usable", [pytest.param(True, marks=requires_ipex), False])
def test_the_default_modes_are_the_stacks_own(ipex_usable, monkeypatch, fresh_ipex_probe):
    """Where IPEX works the guide's IPEX modes; without it (modern stack) compile and export, not IPEX fallbacks."""
    if not ipex_usable:
        monkeypatch.setenv(ipex_support.DISABLE_ENV_VAR, "1")
        assert not ipex_support.probe_ipex(refresh=True).usable
    parser = build_parser()
    specs = resolve_modes(parser.build(RunQaFlags, parser.parse_args(["--do_eval"])))
    modes = {spec.mode for spec in specs}
    if ipex_usable:
        assert specs == parse_mode_list("eager,jit,ipex+jit,eager:bf16,ipex+jit:bf16,auto:int8")
    else:
        assert not any("ipex" in mode for mode in modes) and {"eager", "jit", "compile", "export"} <= modes
        assert {"compile:bf16", "export:bf16", "auto:int8"} <= {spec.name for spec in specs}
    assert EvaluationSettings().modes == specs


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--do_eval", "--fp16"], "unrecognized arguments: --fp16"),
        (["--do_eval", "--modes", "jit", "--jit_mode_eval"], "drop --jit_mode_eval"),
        (["--do_eval", "--torch_compile", "--jit_mode_eval"], "--torch_compile replaces"),
        (["--do_eval", "--modes", "warp"], "unknown mode 'warp'"),
        (["--do_eval", "--modes", "jit:fp8"], "unknown precision 'fp8'"),
        (["--do_eval", "--modes", "jit,jit"], "names a mode twice"),
        ([], "pass --do_eval"),
        (["--do_eval", "--do_train"], "only evaluates"),
        (["--do_eval", "--doc_stride", "384"], "--doc_stride must be"),
        (["--do_eval", "--per_device_eval_batch_size", "0"], "at least 1"),
        (["--do_eval", "--dataset_name", "squad", "--validation_file", "x.json"], "not both"),
        (["--do_eval", "--max_seq_length", "abc"], "invalid int value"),
        (["--do_eval", "--modes", ""], "the mode list names no mode"),
        (["--do_eval", "--modes", " , "], "the mode list names no mode"),
        (["--do_eval", "--num_threads", "100000"], "--num_threads must be between 1 and the"),
        (["--do_eval", "--num_threads", "0"], "--num_threads must be between 1 and the"),
    ],
)
def test_bad_flags_exit_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_malformed_validation_file_is_reported(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"title": "t", "paragraphs": [{"context": "c"}]}]}')
    assert main([*TINY, "--validation_file", str(bad), "--output_dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert str(bad) in error and "has no 'qas' field" in error


def test_validation_file_is_used(tmp_path):
    qa = {"id": "a", "question": "Who wrote the first program?",
          "answers": [{"text": "Ada Lovelace", "answer_start": 0}]}
    data = {"data": [{"title": "t", "paragraphs": [{"context": "Ada Lovelace wrote the first program.", "qas": [qa]}]}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(data))
    assert main([*TINY, "--validation_file", str(path), "--output_dir", str(tmp_path), "--modes", "eager"]) == 0
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["metadata"]["questions"] == 1 and payload["metadata"]["data"] == str(path)


def test_every_timed_batch_has_the_shape_the_modes_were_prepared_on(tiny_model, tokenizer):
    """A short last batch is padded to the batch size (never a new shape inside the timed loop), and only its
    real windows' logits are kept: the same windows, in order, as running each window alone."""
    from cpu_inference_helpers.qa import comparison
    from cpu_inference_helpers.qa.data import load_squad_file, subset_dataset_path
    from cpu_inference_helpers.qa.features import prepare_validation_features

    examples = load_squad_file(subset_dataset_path())[:6]
    features = prepare_validation_features(examples, tokenizer, 64, 16)
    windows = len(features)
    assert windows % 4, "the test needs a short last batch"
    seen_shapes = set()

    class ShapeSpy(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, **inputs):
            seen_shapes.add(tuple(inputs["input_ids"].shape))
            return self.model(**inputs)

    spy = ShapeSpy(tiny_model).eval()
    modes = [comparison.PreparedMode(ModeSpec("eager"), spy, 0.0)]
    (timed,) = comparison.run_interleaved(modes, features.inputs, batch_size=4, progress=False)
    assert seen_shapes == {(4, 64)}
    assert len(timed.latencies) == -(-windows // 4) and timed.start_logits.shape[0] == windows
    with torch.no_grad():
        alone = torch.cat([tiny_model(**{k: v[i:i + 1] for k, v in features.inputs.items()}).start_logits
                           for i in range(windows)])
    np.testing.assert_allclose(timed.start_logits, alone.numpy(), atol=1e-4)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("per_device_eval_batch_size", 0, "--per_device_eval_batch_size must be at least 1"),
    ("doc_stride", 384, "--doc_stride must be at least 0 and smaller than --max_seq_length (got 384 and 384)"),
    ("max_eval_samples", 0, "--max_eval_samples must be at least 1"),
    ("calibration_windows", 0, "--calibration_windows must be at least 1"),
    ("warmup_steps", -1, "--warmup_steps must be at least 0"),
])
def test_the_settings_are_checked_in_one_place_for_the_library_and_the_cli(field, value, message, capsys):
    with pytest.raises(ValueError, match=re.escape(message)):
        EvaluationSettings(**{field: value})
    with pytest.raises(SystemExit):
        run_qa.main(["--do_eval", f"--{field}", str(value)])
    assert message in capsys.readouterr().err


def test_the_guides_own_run_is_spelled_one_way_everywhere():
    """README, docs/run-qa.md, run_qa's help and the note after a random-weights run give the same command."""
    from pathlib import Path

    from cpu_inference_helpers.qa.evaluation import REAL_CHECKPOINT_COMMAND

    root = Path(__file__).resolve().parents[1]

    def commands(text: str) -> list[str]:
        joined = " ".join(text.replace("\\\\\n", " ").replace("\\\n", " ").split())
        start = "python -m cpu_inference_helpers.run_qa --model_name_or_path csarron/"
        return [start + part.split(" --output_dir ")[0] + " --output_dir /tmp/qa"
                for part in joined.split(start)[1:] if "--dataset_name squad --do_eval --max_seq" in part]

    expected = " ".join(REAL_CHECKPOINT_COMMAND.split())
    for name, text in [("README.md", (root / "README.md").read_text()),
                       ("docs/run-qa.md", (root / "docs/run-qa.md").read_text()),
                       ("run_qa's help", run_qa.__doc__)]:
        found = commands(text)
        assert found and all(command == expected for command in found), (name, found)
    assert "--jit_mode_eval --use_ipex" in expected and "--max_seq_length 384 --doc_stride 128" in expected
