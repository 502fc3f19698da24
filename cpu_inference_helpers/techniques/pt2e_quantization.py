"""PT2E int8: PyTorch's own successor to IPEX's int8, lowered by Inductor to oneDNN int8 kernels.

    graph = torch.export.export(model, (), inputs, dynamic_shapes=..., strict=True).module()
    config = get_default_x86_inductor_quantization_config(is_dynamic=True)   # False: static, calibrated
    observed = prepare_pt2e(graph, X86InductorQuantizer().set_global(config))
    for batch in calibration: observed(**batch)
    quantized = convert_pt2e(observed)            # quantize / dequantize nodes around fp32 ops
    torch.compile(quantized) with Inductor's freezing   # -> oneDNN qlinear (VNNI, AMX-INT8), weights packed once

Weights are int8 per output channel either way. Activations: *dynamic* measures each input's range as it
comes (one scale per tensor), *static* fixes the ranges on calibration batches. Static is faster, dynamic
keeps more answers: on minilm-squad's first 48 dev questions (make qa's windows, 64 calibration windows),
static kept 81% of eager fp32's answers and dynamic 96% (Intel Xeon with AMX, modern stack, 2026-12-05;
docs/int8.md), so the table's `compile:int8` quantizes activations dynamically.

Two traps, both checked here rather than left to the reader: the export must be strict (the quantizer
finds Linear layers by the source-module metadata that only strict export records; non-strict leaves it
out and nothing is quantized, without an error), and a batch of one is specialised by export (the graph
then refuses every other batch size), so a size-1 example is exported as two copies of itself.

What the quantizer leaves in floating point (attention's softmax and its matrix products under SDPA, layer
norm, GELU between the int8 Linear layers) can run in bf16: `precision.Bf16Autocast` wraps the quantized graph in CPU
autocast, Inductor's "int8-mixed-bf16" lowering (the qlinear kernels then read and write bf16).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch

from cpu_inference_helpers.infra.log_levels import logger_level
from cpu_inference_helpers.techniques.dynamic_shapes import batch_and_sequence_dims, batch_of_two_if_one, sequence_bound
from cpu_inference_helpers.techniques.smoothquant import smooth_linear_inputs

logger = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor]

#: SmoothQuant's alpha for static PT2E int8 (`compile:int8` given calibration batches).
PT2E_SMOOTH_QUANT_ALPHA = 1.0


class Pt2eApi(NamedTuple):
    """PT2E's entry points on this stack."""

    x86_inductor_quantizer: Any  # the module with X86InductorQuantizer and its default config
    prepare_pt2e: Callable[..., Any]
    convert_pt2e: Callable[..., Any]
    allow_exported_model_train_eval: Callable[[torch.fx.GraphModule], Any]


def pt2e_api() -> Pt2eApi:
    """PT2E's entry points from torchao where it has them (torch 2.9+), else from torch.ao (torch 2.8).

    An ImportError where neither has them.
    """
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        import torch.ao.quantization.quantizer.x86_inductor_quantizer as x86
        from torch.ao.quantization import allow_exported_model_train_eval
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e
    return Pt2eApi(x86, prepare_pt2e, convert_pt2e, allow_exported_model_train_eval)


def _export_dynamic(model: torch.nn.Module, inputs: Batch) -> torch.fx.GraphModule:
    """Strict export with a dynamic batch and sequence dimension shared by every input."""
    shapes = batch_and_sequence_dims(inputs, sequence_bound(model), min_sequence=2)
    example = batch_of_two_if_one(inputs)
    with logger_level("torch.fx.experimental.symbolic_shapes"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model, args=(), kwargs=example, dynamic_shapes=shapes, strict=True)
    return exported.module()


def quantize_pt2e(model: torch.nn.Module, example_inputs: Batch, calibration: Iterable[Batch] | None = None,
                  dynamic_activations: bool = True, smooth_quant_alpha: float | None = None,
                  reduce_range: bool = False) -> torch.fx.GraphModule:
    """A PT2E int8 graph of a copy of `model`: strict export, X86InductorQuantizer, calibrate, convert.

    `dynamic_activations`: activation ranges measured on each call (no calibration needed: `example_inputs`
    runs the observers once); False: static ranges from `calibration` (required, a ValueError without).
    `smooth_quant_alpha` (static only): SmoothQuant on the calibration batches first (`smoothquant`).
    `reduce_range`: 7-bit activations, for CPUs without VNNI (`precision_policy.int8_reduce_range`).
    The result runs eagerly as quantize / dequantize around fp32 kernels (the reference to check against);
    `torch.compile` with freezing lowers it to oneDNN's int8 kernels. Raises RuntimeError when no Linear
    layer was quantized, and whatever export or the quantizer raise.
    """
    batches = list(calibration or [])
    if not dynamic_activations and not batches:
        raise ValueError("static PT2E int8 needs calibration batches (calibration=[...]) for its activation ranges")
    if smooth_quant_alpha is not None and dynamic_activations:
        raise ValueError("SmoothQuant is for static activation ranges: pass dynamic_activations=False")
    api = pt2e_api()
    x86 = api.x86_inductor_quantizer
    if smooth_quant_alpha is not None:
        model = smooth_linear_inputs(model, batches, smooth_quant_alpha)  # a copy
    graph = _export_dynamic(copy.deepcopy(model).eval(), dict(example_inputs))
    if smooth_quant_alpha is not None:
        merge_repeated_multiplications(graph)  # query, key, value: one divided input, quantized once
    config = x86.get_default_x86_inductor_quantization_config(is_dynamic=dynamic_activations, reduce_range=reduce_range)
    quantizer = x86.X86InductorQuantizer().set_global(config)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observed = api.prepare_pt2e(graph, quantizer)
        for batch in batches or [example_inputs]:
            observed(**batch)
        quantized = api.convert_pt2e(observed)
    if quantize_node_count(quantized) == 0:
        raise RuntimeError("the quantizer annotated no Linear layer: nothing was quantized")
    api.allow_exported_model_train_eval(quantized)  # .eval() (the front door calls it) is refused otherwise
    return quantized


def merge_repeated_multiplications(graph: torch.fx.GraphModule) -> int:
    """Merge `aten.mul.Tensor` nodes of `graph` that multiply the same two nodes (a pure op: one result serves
    every user); returns how many were removed. SmoothQuant's query, key and value each divide the one input
    they share by the one scale tensor they share; merged, the quantizer sees one input and quantizes it once."""
    first: dict[tuple[Any, ...], torch.fx.Node] = {}
    removed = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target != torch.ops.aten.mul.Tensor or node.kwargs:
            continue
        key = tuple(node.args)
        if key in first:
            node.replace_all_uses_with(first[key])
            graph.graph.erase_node(node)
            removed += 1
        else:
            first[key] = node
    if removed:
        graph.recompile()
    return removed


def quantize_node_count(graph: torch.fx.GraphModule) -> int:
    """How many activation quantize nodes a converted PT2E graph holds (0: nothing was quantized)."""
    return sum(str(node.target).startswith("quantized_decomposed.quantize_per_tensor") for node in graph.graph.nodes)
