import logging

import torch

from cpu_inference_helpers.compiling import compile_model
from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.parity import max_abs_difference


def test_compiled_model_matches_eager(example_batch):
    model = build_random_qa_model("random-bert-tiny", seed=1)
    result = compile_model(model, example_batch)
    assert result.compiled, result.reason
    with torch.no_grad():
        assert max_abs_difference(model(**example_batch), result.model(**example_batch)) < 1e-4


def test_missing_cpp_compiler_falls_back_to_eager(example_batch, caplog):
    """Inductor's CPU backend needs a C++ compiler: without one (common on Windows) we must fall back."""
    import torch._inductor.config as inductor_config

    no_compiler = {"cpp.cxx": ("no-such-c++-compiler",), "fx_graph_cache": False, "fx_graph_remote_cache": False}
    torch._dynamo.reset()
    model = build_random_qa_model("random-bert-tiny", seed=2)
    with inductor_config.patch(no_compiler), caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(model, example_batch, mode="compile")
    torch._dynamo.reset()
    assert ready.record.mode == "eager" and ready.record.fallbacks[0].startswith("compile:")
    assert "torch.compile not applied" in caplog.text
    with torch.no_grad():
        assert max_abs_difference(model(**example_batch), ready(**example_batch)) == 0


def test_positional_inputs_are_refused(tiny_model, example_batch):
    result = compile_model(tiny_model, tuple(example_batch.values()))
    assert not result.compiled and "dict" in result.reason
