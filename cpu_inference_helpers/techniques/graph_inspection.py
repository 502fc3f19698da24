"""Looking inside TorchScript graphs: which operators run, and which of them are fusions.

Freezing and IPEX rewrite the graph when it first runs (the profiling executor), so the
fused operators show in the graph that was last executed, not in `module.graph`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch

#: Node kinds that stand for several operators fused into one kernel, and what they replace.
FUSION_DESCRIPTIONS: dict[str, str] = {
    "ipex_prepack::linear_gelu_run": "Linear + GELU",
    "ipex_prepack::linear_add_run": "Linear + Add (residual)",
    "ipex_prepack::linear_add_add_run": "Linear + Add + Add",
    "ipex_prepack::linear_run": "Linear on prepacked (blocked) oneDNN weights",
    "ipex_prepack::mkl_sgemm_run": "Linear on MKL's prepacked fp32 GEMM (no Add/GELU folded in)",
    "ipex::add_layernorm": "Add + LayerNorm",
    "ipex::mha_scores_calc": "attention scores: MatMul + scale + mask + Softmax",
    "ipex::matmul_outtrans": "attention output: MatMul + transpose",
    "ipex::split_tensor": "split after concat linear (Q, K, V in one GEMM)",
    "ipex::bert_flash_mha": "whole BERT attention block",
    "prim::oneDNNFusionGroup": "oneDNN Graph fusion group",
    "prim::TensorExprGroup": "NNC (TensorExpr) fusion group",
}
FUSED_PREFIXES = ("ipex::", "ipex_prepack::", "torch_ipex::", "prim::oneDNNFusionGroup", "prim::TensorExprGroup",
                  "prim::FusionGroup")


def op_counts(graph: torch.Graph) -> Counter[str]:
    """How often each node kind occurs in `graph`, nested blocks included."""
    counts: Counter[str] = Counter()

    def visit(block: Any) -> None:
        for node in block.nodes():
            counts[node.kind()] += 1
            for inner in node.blocks():
                visit(inner)

    visit(graph)
    return counts


def executed_graph(model: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Graph:
    """Run `model(**inputs)` once and return the optimised graph TorchScript executed.

    `model` is a traced module or an `InferenceModel` wrapping one; the graph reflects
    freezing and any fusion passes (IPEX registers its own when imported).
    """
    module = getattr(model, "module", model)  # an InferenceModel wraps the traced module
    if not isinstance(module, torch.jit.ScriptModule):
        raise ValueError(f"{type(module).__name__} is not a TorchScript model: trace it first (mode 'jit')")
    model(**inputs)
    return torch.jit.last_executed_optimized_graph()


def fused_ops(graph: torch.Graph) -> dict[str, int]:
    """The fused operators in `graph` with their counts, sorted by name."""
    counts = op_counts(graph)
    return {kind: counts[kind] for kind in sorted(counts) if kind.startswith(FUSED_PREFIXES)}


def describe_fusions(graph: torch.Graph) -> list[str]:
    """One line per fused operator kind: name, count, and what it replaces."""
    return [
        f"{kind:32s} x{count:<3d} {FUSION_DESCRIPTIONS.get(kind, '')}".rstrip()
        for kind, count in fused_ops(graph).items()
    ]
