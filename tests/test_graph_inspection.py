import pytest
import torch
from conftest import ipex_bf16_usable, requires_ipex

from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.techniques.graph_inspection import describe_fusions, executed_graph, fused_ops, op_counts


def test_op_counts_sees_nested_blocks():
    @torch.jit.script
    def branchy(x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return torch.relu(x)
        return torch.tanh(x)

    counts = op_counts(branchy.graph)
    assert counts["aten::relu"] == 1 and counts["aten::tanh"] == 1 and counts["prim::If"] == 1


def test_jit_alone_runs_no_prepacked_ipex_linear(tiny_model, example_batch):
    """Without ipex.optimize the executed graph keeps PyTorch's own Linear: prepacking is IPEX's step."""
    ready = prepare_for_inference(tiny_model, example_batch, mode="jit")
    assert ready.record.mode == "jit", ready.record.summary()
    graph = executed_graph(ready, example_batch)
    assert not any(kind.startswith("ipex_prepack::") for kind in fused_ops(graph))
    assert op_counts(graph)["aten::linear"] > 0, op_counts(graph)


def test_eager_models_are_refused(tiny_model, example_batch):
    ready = prepare_for_inference(tiny_model, example_batch, mode="eager")
    for model in (ready, tiny_model):
        with pytest.raises(ValueError, match="not a TorchScript model"):
            executed_graph(model, example_batch)


@requires_ipex
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ipex_jit_with_onednn_fuses_linear_gelu_linear_add_and_attention(example_batch, precision):
    """oneDNN kernels (auto_kernel_selection=True) fuse on every x86 CPU, whatever its vendor."""
    model = build_random_qa_model("random-bert-tiny", attn_implementation="eager")
    # fp32: oneDNN pinned; bf16 Linear layers run on oneDNN whatever the setting (and refuse it)
    options = {"auto_kernel_selection": True} if precision == "fp32" else {"allow_emulated_bf16": True}
    ready = prepare_for_inference(model, example_batch, mode="ipex+jit", precision=precision, **options)
    if precision == "bf16" and not ipex_bf16_usable():  # an AVX2-only CPU: no IPEX bf16 (the test needs IPEX)
        assert ready.record.mode != "ipex+jit", ready.record.summary()
        assert "BF16 weight prepack needs" in ready.record.fallbacks[0].reason, ready.record.summary()
        return
    fused = fused_ops(executed_graph(ready, example_batch))
    for kind in ("ipex_prepack::linear_gelu_run", "ipex_prepack::linear_add_run", "ipex::mha_scores_calc"):
        assert fused.get(kind, 0) >= 2, (kind, fused)  # once per layer of the 2-layer model
    lines = describe_fusions(executed_graph(ready, example_batch))
    assert any("Linear + GELU" in line for line in lines)


@requires_ipex
def test_ipex_jit_with_mkl_fp32_keeps_add_and_gelu_outside_the_gemm(example_batch):
    """IPEX's MKL fp32 path (auto_kernel_selection=False) runs mkl_sgemm_run and folds no Add/GELU into it."""
    model = build_random_qa_model("random-bert-tiny", attn_implementation="eager")
    ready = prepare_for_inference(model, example_batch, mode="ipex+jit", precision="fp32",
                                  auto_kernel_selection=False)
    graph = executed_graph(ready, example_batch)
    counts = op_counts(graph)
    assert counts["ipex_prepack::mkl_sgemm_run"] >= 4, dict(counts)  # the Linear layers of the 2 layers
    assert counts["aten::gelu"] == 2  # GELU stays a separate operator, once per layer
    fused = fused_ops(graph)
    assert "ipex_prepack::linear_gelu_run" not in fused and "ipex_prepack::linear_add_run" not in fused
    assert fused.get("ipex::add_layernorm", 0) >= 4  # the residual Add joins the LayerNorm instead
    assert fused.get("ipex::mha_scores_calc", 0) >= 2  # the graph-level attention fusion does not need oneDNN
