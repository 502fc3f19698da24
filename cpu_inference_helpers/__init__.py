"""Helpers for fast inference of Hugging Face transformers models on CPUs.

Copy-paste friendly entry points:

    from cpu_inference_helpers import detect_capabilities, prepare_for_inference
    print(detect_capabilities().summary())
    ready = prepare_for_inference(model, example_inputs, precision="bf16")  # mode="auto": fastest that works here
    outputs = ready(**inputs)  # the model's ModelOutput
    save_prepared(prepare_for_inference(model, example_inputs, mode="export"), "qa.pt2")  # load_prepared("qa.pt2")

The front door and its table of paths, the building blocks each path is made of (for readers who want
one technique), and what inspects or measures them; the QA pieces are in `cpu_inference_helpers.qa`.
"""

from cpu_inference_helpers.deployment import load_prepared, save_prepared
from cpu_inference_helpers.infra.timing import LatencyStats, break_even_samples, interleaved_latency, measure_latency
from cpu_inference_helpers.models import (
    LoadedModel,
    build_random_qa_model,
    load_offline_tokenizer,
    load_qa_model_and_tokenizer,
)
from cpu_inference_helpers.modes import MODES, ModeSpec, parse_mode_list
from cpu_inference_helpers.optimize import InferenceModel, prepare_for_inference
from cpu_inference_helpers.record import Built, OptimizationRecord, Step
from cpu_inference_helpers.registry import PATHS, auto_plan, honoured_options
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities, cached_capabilities, detect_capabilities
from cpu_inference_helpers.techniques.compiling import compile_model, linear_kernels, reads_linear_weights_each_call
from cpu_inference_helpers.techniques.exporting import export_model, load_package
from cpu_inference_helpers.techniques.graph_inspection import describe_fusions, executed_graph, fused_ops, op_counts
from cpu_inference_helpers.techniques.ipex_support import DISABLE_ENV_VAR as IPEX_DISABLE_ENV_VAR
from cpu_inference_helpers.techniques.ipex_support import IpexStatus, optimize_with_ipex, probe_ipex
from cpu_inference_helpers.techniques.kernel_choice import choose_compile_shapes, choose_fp32_kernel
from cpu_inference_helpers.techniques.onednn_verbose import native_output_captured, onednn_kernels
from cpu_inference_helpers.techniques.parity import max_abs_difference
from cpu_inference_helpers.techniques.precision import inference_context, resolve_precision
from cpu_inference_helpers.techniques.quantization import quantize_linear_by_hand
from cpu_inference_helpers.techniques.tracing import forward_parameter_names, trace_model

__all__ = [
    "IPEX_DISABLE_ENV_VAR",
    "MODES",
    "PATHS",
    "Built",
    "CpuCapabilities",
    "InferenceModel",
    "IpexStatus",
    "LatencyStats",
    "LoadedModel",
    "ModeSpec",
    "OptimizationRecord",
    "Step",
    "auto_plan",
    "break_even_samples",
    "build_random_qa_model",
    "cached_capabilities",
    "choose_compile_shapes",
    "choose_fp32_kernel",
    "compile_model",
    "describe_fusions",
    "detect_capabilities",
    "executed_graph",
    "export_model",
    "forward_parameter_names",
    "fused_ops",
    "honoured_options",
    "inference_context",
    "interleaved_latency",
    "linear_kernels",
    "load_offline_tokenizer",
    "load_package",
    "load_prepared",
    "load_qa_model_and_tokenizer",
    "max_abs_difference",
    "measure_latency",
    "native_output_captured",
    "onednn_kernels",
    "op_counts",
    "optimize_with_ipex",
    "parse_mode_list",
    "prepare_for_inference",
    "probe_ipex",
    "quantize_linear_by_hand",
    "reads_linear_weights_each_call",
    "resolve_precision",
    "save_prepared",
    "trace_model",
]
