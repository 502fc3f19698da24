"""The C++ program (deploy/qa_logits.cpp): built against the torch wheel, no Python in its process, Python's answers."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from cpu_inference_helpers.deployment import (
    build_deploy_program,
    deploy_build_problem,
    read_logits,
    run_deploy_program,
    save_prepared,
    write_token_ids,
)
from cpu_inference_helpers.models import load_qa_model_and_tokenizer
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.qa import load_examples, prepare_validation_features
from cpu_inference_helpers.qa.predict import answers_from_logits
from cpu_inference_helpers.registry import inductor_compiler_available

QUESTIONS = 6  # the first packaged questions
SEQ_LEN, DOC_STRIDE = 128, 32  # short windows: several per question, so post-processing spans windows

pytestmark = pytest.mark.skipif(
    deploy_build_problem() is not None or not inductor_compiler_available(),
    reason=f"cannot build the C++ program here: {deploy_build_problem()}",
)


@pytest.fixture(scope="module")
def program():
    return build_deploy_program()  # cached per source and torch version, like the notebook's


@pytest.fixture(scope="module")
def shipped():
    loaded = load_qa_model_and_tokenizer("minilm-squad")
    examples = load_examples()[0][:QUESTIONS]
    features = prepare_validation_features(examples, loaded.tokenizer, SEQ_LEN, DOC_STRIDE)
    return loaded.model, examples, features


@pytest.mark.parametrize(("mode", "file"), [("jit", "model.pt"), ("export", "model.pt2")])
def test_the_cpp_program_gives_pythons_answers(program, shipped, mode, file, tmp_path):
    model, examples, features = shipped
    options = {"package_path": tmp_path / "built.pt2"} if mode == "export" else {}
    ready = prepare_for_inference(model, features.inputs, mode=mode, **options)
    assert ready.record.ran_as == mode, ready.record.summary()
    saved = save_prepared(ready, tmp_path / file)
    python = ready(**features.inputs)

    run = run_deploy_program(program, saved, features.inputs, repeats=1)

    assert set(run.logits) == {"start_logits", "end_logits"}
    scale = python.start_logits.abs().max().item()
    for name in run.logits:
        assert run.logits[name].shape == python[name].shape
        assert (run.logits[name] - python[name]).abs().max().item() <= 1e-4 * max(scale, 1.0)
    cpp_answers, _ = answers_from_logits(examples, features, run.logits["start_logits"].numpy(),
                                         run.logits["end_logits"].numpy())
    python_answers, _ = answers_from_logits(examples, features, python.start_logits.numpy(),
                                            python.end_logits.numpy())
    assert cpp_answers == python_answers and len(cpp_answers) == QUESTIONS
    assert run.load_seconds > 0 and run.first_call_seconds > 0 and run.steady_median_seconds > 0


def test_the_program_links_libtorch_and_not_python(program):
    linked = subprocess.run(["ldd", str(program)], capture_output=True, text=True, check=True).stdout
    assert "libtorch_cpu.so" in linked and "libc10.so" in linked
    assert "libpython" not in linked and "libtorch_python" not in linked


def test_token_and_logit_files_round_trip(tmp_path):
    ids = {"input_ids": torch.arange(12).reshape(3, 4), "attention_mask": torch.ones(3, 4, dtype=torch.int64)}
    data = write_token_ids(tmp_path / "tokens.bin", ids).read_bytes()
    assert data[:8] == b"QATOKENS" and len(data) == 8 + 24 + 2 * (8 + 3 * 4 * 8) + len("input_ids") + len(
        "attention_mask")
    logits = tmp_path / "logits.bin"
    values = np.arange(6, dtype="<f4")
    logits.write_bytes(b"QALOGITS" + np.array([1, 2, 3, 5], dtype="<i8").tobytes() + b"start" + values.tobytes())
    assert torch.equal(read_logits(logits)["start"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="one shape"):
        write_token_ids(tmp_path / "bad.bin", {"input_ids": torch.zeros(2, 4), "attention_mask": torch.zeros(2, 5)})


def test_the_program_says_what_is_wrong_with_its_input(program, shipped, tmp_path):
    model, _, features = shipped
    ready = prepare_for_inference(model, features.inputs, mode="jit")
    saved = save_prepared(ready, tmp_path / "model.pt")
    with pytest.raises(RuntimeError, match="qa_logits failed"):
        run_deploy_program(program, tmp_path / "absent.pt", features.inputs)
    without_mask = {name: tensor for name, tensor in features.inputs.items() if name != "attention_mask"}
    package = tmp_path / "not-a-package.pt2"
    package.write_bytes(b"nothing")
    with pytest.raises(RuntimeError, match="qa_logits failed"):
        run_deploy_program(program, package, without_mask)
    usage = subprocess.run([str(program)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    assert run_deploy_program(program, saved, features.inputs).logits["start_logits"].shape[1] == SEQ_LEN
