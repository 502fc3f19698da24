"""PT2E int8 (compile:int8): the quantizer's traps checked, static ranges only with calibration, the fallback said."""

import logging

import pytest
import torch
import torch._inductor.config as inductor_config
from conftest import cpuinfo_capabilities
from torch._dynamo.utils import counters
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.paths.int8_builders import mixed_precision_problem
from cpu_inference_helpers.paths.precision_policy import int8_gemm_autotune, int8_mixed_bf16, int8_reduce_range
from cpu_inference_helpers.techniques.capabilities import cached_capabilities, inductor_compiler_available
from cpu_inference_helpers.techniques.compiling import NO_GEMM_AUTOTUNE_ENV_VAR
from cpu_inference_helpers.techniques.precision import Bf16Autocast
from cpu_inference_helpers.techniques.pt2e_quantization import quantize_node_count, quantize_pt2e


def _batch(example_batch, rows: int) -> dict[str, torch.Tensor]:
    return {name: tensor[:1].repeat(rows, 1) for name, tensor in example_batch.items()}


def test_a_batch_of_one_quantizes_a_graph_that_takes_any_batch(tiny_model, example_batch):
    """Export specialises a size-1 dimension; the quantized graph must still take other batch sizes."""
    one = _batch(example_batch, 1)
    quantized = quantize_pt2e(tiny_model, one, [example_batch], dynamic_activations=False)
    assert quantize_node_count(quantized) > 0  # strict export kept the Linear layers' metadata
    with torch.no_grad():
        for rows in (1, 3):
            inputs = _batch(example_batch, rows)
            got, want = quantized(**inputs)["start_logits"], tiny_model(**inputs)["start_logits"]
            assert got.shape == want.shape and (got - want).abs().max() < 0.1 * want.abs().max()
        shorter = {name: tensor[:, :20] for name, tensor in example_batch.items()}
        assert quantized(**shorter)["start_logits"].shape == (2, 20)


def test_static_ranges_need_calibration_before_any_export(tiny_model, example_batch):
    with pytest.raises(ValueError, match="needs calibration batches"):
        quantize_pt2e(tiny_model, example_batch, dynamic_activations=False)


def test_bf16_autocast_returns_the_model_output_in_fp32(tiny_model, example_batch):
    with torch.no_grad():
        outputs = Bf16Autocast(tiny_model)(**example_batch)
        reference = tiny_model(**example_batch)
    assert type(outputs) is QuestionAnsweringModelOutput and outputs.start_logits.dtype == torch.float32
    difference = (outputs.start_logits - reference.start_logits).abs().max()
    assert 0 < difference < 0.1 * reference.start_logits.abs().max()  # bf16 ran, close to fp32


class _NoLinear(torch.nn.Module):
    """Embeddings and a sum: nothing the quantizer annotates."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(30522, 8)

    def forward(self, input_ids, attention_mask, token_type_ids):
        return {"start_logits": self.embedding(input_ids).sum(-1).masked_fill(attention_mask == 0, -1e4)}


def test_a_model_with_nothing_to_quantize_falls_back_with_the_reason(example_batch, caplog):
    """Not a silent "int8" that is fp32: the path says the quantizer found nothing and eager int8 runs."""
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        ready = prepare_for_inference(_NoLinear(), example_batch, mode="compile", precision="int8")
    assert ready.record.mode == "eager" and ready.record.fallbacks[0].step == "compile:int8"
    assert "nothing was quantized" in ready.record.fallbacks[0].reason
    assert "nothing was quantized" in caplog.text


def test_int8_gemms_are_autotuned_only_where_the_templates_kernels_exist():
    """AMX-INT8 or AVX-512 VNNI: Inductor's C++ int8 GEMM template is timed against oneDNN; on an AVX2-only CPU
    the template computed wrong results (and timing picked it in some runs), so oneDNN's kernels run untimed."""
    assert int8_gemm_autotune(cpuinfo_capabilities("intel_sapphire_rapids"))[0] is True
    assert int8_gemm_autotune(cpuinfo_capabilities("amd_zen4"))[0] is True  # AVX-512 VNNI, no AMX
    autotuned, choice = int8_gemm_autotune(cpuinfo_capabilities("amd_zen3_avx2"))
    assert autotuned is False and choice.step == "int8 GEMM kernels" and "neither AMX nor AVX-512 VNNI" in choice.reason


def test_activations_are_quantized_to_7_bits_only_without_vnni():
    assert int8_reduce_range(cpuinfo_capabilities("intel_sapphire_rapids"))[0] is False
    assert int8_reduce_range(cpuinfo_capabilities("amd_zen4"))[0] is False  # AVX-512 VNNI
    reduced, choice = int8_reduce_range(cpuinfo_capabilities("amd_zen3_avx2"))
    assert reduced is True and choice.step == "int8 activation range" and "reduce_range" in choice.reason


def _activation_ranges(graph: torch.fx.GraphModule) -> set[tuple[int, int]]:
    """(quant_min, quant_max) of every activation quantize node of a converted PT2E graph."""
    return {(node.args[3], node.args[4]) for node in graph.graph.nodes
            if str(node.target).startswith("quantized_decomposed.quantize_per_tensor")}


def test_reduce_range_quantizes_activations_to_7_bits(tiny_model, example_batch):
    full = quantize_pt2e(tiny_model, example_batch, [example_batch], dynamic_activations=False)
    reduced = quantize_pt2e(tiny_model, example_batch, [example_batch], dynamic_activations=False, reduce_range=True)
    assert _activation_ranges(full) == {(0, 255)} and _activation_ranges(reduced) == {(0, 127)}


def test_the_unquantized_parts_run_in_bf16_only_on_amx():
    assert int8_mixed_bf16(cpuinfo_capabilities("intel_sapphire_rapids"))[0] is True
    mixed, choice = int8_mixed_bf16(cpuinfo_capabilities("amd_zen4"))
    assert mixed is False and choice.step == "int8 float parts" and "no AMX" in choice.reason


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs Inductor's C++ compiler")
def test_compile_int8_is_pt2e_int8_with_dynamic_activations(tiny_model, example_batch):
    autotuned_before = counters["inductor"]["select_algorithm_autotune"]
    with inductor_config.patch(force_disable_caches=True):
        ready = prepare_for_inference(tiny_model, example_batch, mode="compile", precision="int8")
    assert ready.record.ran_as == "compile:int8", ready.record.summary()
    applied = " ".join(ready.record.applied)
    assert "PT2E int8" in applied and "dynamic activations" in applied
    assert "GEMMs autotuned" not in applied and counters["inductor"]["select_algorithm_autotune"] == autotuned_before
    assert ("int8-mixed-bf16" in applied) == cached_capabilities().has_amx
    assert int8_reduce_range(cached_capabilities())[1] in ready.record.choices  # 7-bit activations without VNNI
    with torch.no_grad():
        got, want = ready(**example_batch).start_logits, tiny_model(**example_batch).start_logits
    assert (got - want).abs().max() < 0.1 * want.abs().max()


@pytest.mark.skipif(not inductor_compiler_available(), reason="torch.compile needs Inductor's C++ compiler")
def test_compile_int8_given_calibration_is_static_pt2e_after_smoothquant(tiny_model, example_batch, capsys,
                                                                         monkeypatch):
    """...and its matrix products' kernels are chosen by timing (Inductor's GEMM autotuning, caches off so that
    an earlier run's compiled graph cannot stand in for the compilation), without Inductor's timing reports."""
    monkeypatch.delenv(NO_GEMM_AUTOTUNE_ENV_VAR, raising=False)  # `make test` sets it for every other test
    autotuned_before = counters["inductor"]["select_algorithm_autotune"]
    with inductor_config.patch(force_disable_caches=True):
        ready = prepare_for_inference(tiny_model, example_batch, mode="compile", precision="int8",
                                      calibration=[example_batch], smooth_quant_alpha=0.6)
    assert ready.record.ran_as == "compile:int8", ready.record.summary()
    applied = " ".join(ready.record.applied)
    assert "static activations: SmoothQuant alpha 0.6, 1 calibration batches" in applied, applied
    autotuned_here, gemm_kernels = int8_gemm_autotune(cached_capabilities())
    assert gemm_kernels in ready.record.choices
    if autotuned_here:  # AMX or AVX-512 VNNI
        assert "GEMMs autotuned" in applied and counters["inductor"]["select_algorithm_autotune"] > autotuned_before
    else:  # an AVX2-only CPU: the template computed wrong results there, oneDNN's kernels run untimed
        assert "GEMMs autotuned" not in applied
        assert counters["inductor"]["select_algorithm_autotune"] == autotuned_before
    assert "autotune" not in capsys.readouterr().err.lower()  # a notebook cell would show them
    with torch.no_grad():
        got, want = ready(**example_batch).start_logits, tiny_model(**example_batch).start_logits
    assert (got - want).abs().max() < 0.1 * want.abs().max()


def test_smoothquant_is_for_static_ranges_only(tiny_model, example_batch):
    with pytest.raises(ValueError, match="SmoothQuant is for static activation ranges"):
        quantize_pt2e(tiny_model, example_batch, [example_batch], smooth_quant_alpha=0.5)


def test_static_pt2e_after_smoothquant_quantizes_every_linear_input_once(tiny_model, example_batch):
    """The SmoothedLinear wrappers keep the quantizer's view of the Linear layers (strict export's metadata), and
    query, key and value, sharing their scales, share one quantized input as without SmoothQuant."""
    plain = quantize_pt2e(tiny_model, example_batch, [example_batch], dynamic_activations=False)
    smoothed = quantize_pt2e(tiny_model, example_batch, [example_batch], dynamic_activations=False,
                             smooth_quant_alpha=0.5)
    assert quantize_node_count(smoothed) == quantize_node_count(plain) > 0


class _Fixed(torch.nn.Module):
    """Returns the logits it was given, whatever the inputs: a stand-in for a graph with known outputs."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, **inputs):
        return {"start_logits": self.logits}


def test_the_mixed_precision_check_forgives_a_few_outliers_not_a_different_graph():
    """One logit of 768 across a static int8 step passes; every logit off, or a wrong shape, does not."""
    logits = torch.linspace(-8.0, 8.0, 768).reshape(2, 384)
    tolerance = 0.15 * 8.0  # int8's 1e-1 and bf16's 5e-2 of the output scale
    one_outlier = logits.clone()
    one_outlier[0, 5] += 10 * tolerance
    assert mixed_precision_problem(_Fixed(logits), _Fixed(one_outlier), {}) is None
    problem = mixed_precision_problem(_Fixed(logits), _Fixed(logits + 2 * tolerance), {})
    assert problem and "at the 99% quantile" in problem
    assert mixed_precision_problem(_Fixed(logits), _Fixed(logits[:, :100]), {})
