import logging

import pytest
import torch
from torch._dynamo.utils import counters

from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.optimize import inductor_compiler_available, prepare_for_inference
from cpu_inference_helpers.techniques.compiling import (
    GEMM_AUTOTUNE_SETTINGS,
    NO_GEMM_AUTOTUNE_ENV_VAR,
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


def test_gemm_autotuning_covers_the_first_calls_shapes_only_and_every_compilation_for_them():
    """The build's warm-up (the example's shape) compiles with kernels timed; a later shape compiles without; the
    example's shape compiled again (after a Dynamo reset dropped its graph) times its kernels again."""
    seen = []

    def compiled(**inputs):  # stands in for the compiled model: records the Inductor settings a compilation sees
        seen.append({name: getattr(torch._inductor.config, name) for name in GEMM_AUTOTUNE_SETTINGS})
        return inputs

    model = FreezingCompiled(compiled, freezing=True, gemm_autotune=True)
    model(x=torch.zeros(2, 4))
    model(x=torch.zeros(3, 4))
    model(x=torch.zeros(2, 4))
    assert seen[0] == GEMM_AUTOTUNE_SETTINGS and seen[1] != seen[0] and seen[2] == seen[0]
    assert not torch._inductor.config.max_autotune_gemm  # restored after the call
    plain = FreezingCompiled(compiled, freezing=True)
    plain(x=torch.zeros(2, 4))
    assert seen[3] == seen[1]


def strict_export_elsewhere() -> None:
    """A strict torch.export of an unrelated module, as PT2E int8 does: it calls torch._dynamo.reset()."""
    torch.export.export(torch.nn.Linear(4, 4), (torch.randn(2, 4),), strict=True)


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs a C++ compiler")
def test_a_compiled_model_whose_graphs_a_dynamo_reset_dropped_says_it_compiles_again(example_batch, caplog):
    """A strict torch.export (PT2E int8 does one) resets Dynamo on torch 2.13 (torch 2.8's leaves other models'
    graphs alone; the releases between are untested): the model compiles again on its next call and says so, and
    only then."""
    from torch._dynamo.utils import counters

    model = build_random_qa_model("random-bert-tiny", seed=4)
    ready = prepare_for_inference(model, example_batch, mode="compile", dynamic_shapes=False)
    with caplog.at_level(logging.INFO, logger="cpu_inference_helpers"):
        ready(**example_batch)
        assert "compiled this model again" not in caplog.text
        strict_export_elsewhere()
        graphs = counters["stats"]["unique_graphs"]
        ready(**example_batch)
    compiled_again = counters["stats"]["unique_graphs"] > graphs
    assert compiled_again == (torch_release() >= (2, 13))
    said = "compiled this model again for input shapes it had compiled before" in caplog.text
    assert said == compiled_again, caplog.text


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs a C++ compiler")
def test_modes_prepared_together_leave_no_compile_mode_to_compile_on_its_first_timed_call(example_batch, monkeypatch):
    """A later mode's strict torch.export (PT2E int8) resets Dynamo while `prepare_modes` runs: an earlier compile
    mode must be compiled again before the timing starts, with the time counted in its set-up."""
    from torch._dynamo.utils import counters

    from cpu_inference_helpers import preparation
    from cpu_inference_helpers.modes import ModeSpec

    prepare_one = preparation.prepare_mode

    def prepare_then_reset_after_eager(model, example, spec, **options):  # eager stands in for the exporting mode
        ready = prepare_one(model, example, spec, **options)
        if spec.mode == "eager":
            strict_export_elsewhere()
        return ready

    monkeypatch.setattr(preparation, "prepare_mode", prepare_then_reset_after_eager)
    model = build_random_qa_model("random-bert-tiny", seed=5)
    compiled, _ = preparation.prepare_modes(model, example_batch, [ModeSpec("compile"), ModeSpec("eager")],
                                            progress=False)
    assert compiled.record.mode == "compile", compiled.record
    graphs = counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        compiled(**example_batch)
    assert counters["stats"]["unique_graphs"] == graphs, "the compile mode compiled again on its first timed call"


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


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs Inductor's C++ compiler")
def test_the_no_gemm_autotune_variable_compiles_untuned_and_says_so(tiny_model, example_batch, monkeypatch, caplog):
    monkeypatch.setenv(NO_GEMM_AUTOTUNE_ENV_VAR, "1")
    autotuned_before = counters["inductor"]["select_algorithm_autotune"]
    logs = caplog.at_level(logging.INFO, "cpu_inference_helpers")
    with torch._inductor.config.patch(force_disable_caches=True), logs:
        built = compile_model(tiny_model, example_batch, gemm_autotune=True)
    assert not built.fell_back and "GEMMs autotuned" not in " ".join(built.applied), built.applied
    assert counters["inductor"]["select_algorithm_autotune"] == autotuned_before
    assert f"GEMM autotuning skipped: {NO_GEMM_AUTOTUNE_ENV_VAR} is set" in caplog.text
