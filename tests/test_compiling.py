import logging

import pytest
import torch

from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.optimize import inductor_compiler_available, prepare_for_inference
from cpu_inference_helpers.techniques.compiling import (
    GEMM_AUTOTUNE_SETTINGS,
    RECOMPILE_LIMIT,
    FreezingCompiled,
    compile_model,
    linear_kernels,
    reads_linear_weights_each_call,
)
from cpu_inference_helpers.techniques.parity import max_abs_difference


def torch_release() -> tuple[int, int]:
    """PyTorch's (major, minor) version."""
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def test_gemm_autotuning_covers_the_first_compilation_only():
    """The build's warm-up (the example's shape) compiles with kernels timed; a later shape compiles without."""
    seen = []

    def compiled(**inputs):  # stands in for the compiled model: records the Inductor settings a compilation sees
        seen.append({name: getattr(torch._inductor.config, name) for name in GEMM_AUTOTUNE_SETTINGS})
        return inputs

    model = FreezingCompiled(compiled, freezing=True, gemm_autotune=True)
    model(x=1)
    model(x=2)
    assert seen[0] == GEMM_AUTOTUNE_SETTINGS and seen[1] != seen[0]
    assert not torch._inductor.config.max_autotune_gemm  # restored after the call
    plain = FreezingCompiled(compiled, freezing=True)
    plain(x=1)
    assert seen[2] == seen[1]


def test_compiled_model_matches_eager(example_batch):
    model = build_random_qa_model("random-bert-tiny", seed=1)
    result = compile_model(model, example_batch)
    assert result.mode == "compile" and not result.fell_back, result.reason
    with torch.no_grad():
        assert max_abs_difference(model(**example_batch), result.model(**example_batch)) < 1e-4


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs a C++ compiler")
def test_a_compiled_model_is_not_compiled_again_when_called_in_another_grad_mode(example_batch):
    """run_qa timed its modes under `torch.inference_mode()` after they were warmed up under `torch.no_grad()`:
    Dynamo compiled every compile mode again on the first timed batch (7-12 s for minilm, in the throughput)."""
    from torch._dynamo.utils import counters

    model = build_random_qa_model("random-bert-tiny", seed=3)
    ready = prepare_for_inference(model, example_batch, mode="compile", dynamic_shapes=False)
    assert ready.record.mode == "compile", ready.record
    with torch.no_grad():
        expected = ready(**example_batch)
    graphs = counters["stats"]["unique_graphs"]
    for grad_mode in (torch.inference_mode, torch.enable_grad, torch.no_grad):
        with grad_mode():
            outputs = ready(**example_batch)
        assert counters["stats"]["unique_graphs"] == graphs, f"compiled again under {grad_mode.__name__}"
        start = outputs["start_logits"]
        assert not start.is_inference() and not start.requires_grad
        assert max_abs_difference(expected, outputs) == 0


def test_missing_cpp_compiler_falls_back_to_eager(example_batch, caplog):
    """Inductor's CPU backend needs a C++ compiler: without one (common on Windows) we must fall back."""
    import torch._inductor.config as inductor_config

    no_compiler = {"cpp.cxx": ("no-such-c++-compiler",), "fx_graph_cache": False, "fx_graph_remote_cache": False}
    torch._dynamo.reset()
    model = build_random_qa_model("random-bert-tiny", seed=2)
    with inductor_config.patch(no_compiler), caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(model, example_batch, mode="compile", dynamic_shapes=False)
    torch._dynamo.reset()
    assert ready.record.mode == "eager" and [step.step for step in ready.record.fallbacks] == ["compile"]
    assert "torch.compile not applied" in caplog.text
    with torch.no_grad():
        assert max_abs_difference(model(**example_batch), ready(**example_batch)) == 0


def test_positional_inputs_are_refused(tiny_model, example_batch):
    result = compile_model(tiny_model, tuple(example_batch.values()))
    assert result.mode == "eager" and result.fallbacks[0].step == "compile" and "dict" in result.reason


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs a C++ compiler")
@pytest.mark.skipif(not torch._C.has_mkl, reason="PyTorch built without MKL: Inductor packs fp32 Linear for oneDNN")
def test_fp32_shapes_decide_between_mkl_and_onednn(example_batch):
    """Static shapes: Inductor packs fp32 Linear layers for MKL; dynamic shapes never do (oneDNN on torch 2.13)."""
    ops = {}
    for dynamic in (False, True):
        model = build_random_qa_model("random-bert-tiny", seed=4)
        result = compile_model(model, example_batch, dynamic=dynamic)
        assert result.mode == "compile", result.reason
        ops[dynamic] = set(linear_kernels(result.model, example_batch))
    assert ops[False] == {"mkl::_mkl_linear"}, ops
    assert "mkl::_mkl_linear" not in ops[True]
    if torch_release() >= (2, 13):
        assert ops[True] == {"mkldnn::_linear_pointwise"}


class _Scale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs a C++ compiler")
def test_many_models_of_one_class_are_all_compiled():
    """Dynamo's default limit (8 cache entries per function) would run the 9th frozen model eagerly, silently."""
    inputs = {"x": torch.randn(2, 8)}
    for index in range(RECOMPILE_LIMIT // 4 + 1):  # well past Dynamo's default of 8
        model = _Scale().eval()
        result = compile_model(model, inputs)
        assert result.mode == "compile", result.reason
        assert not reads_linear_weights_each_call(result.model, model, inputs), f"model {index} ran eagerly"
