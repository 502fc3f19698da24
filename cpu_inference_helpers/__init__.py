"""Helpers for fast inference of Hugging Face transformers models on CPUs.

Copy-paste friendly entry points:

    from cpu_inference_helpers import detect_capabilities, prepare_for_inference
    print(detect_capabilities().summary())
    ready = prepare_for_inference(model, example_inputs, precision="bf16")  # mode="auto": fastest that works here
    outputs = ready(**inputs)  # the model's ModelOutput
"""

from .capabilities import CpuCapabilities, cached_capabilities, detect_capabilities
from .ipex_support import IpexStatus, optimize_with_ipex, probe_ipex
from .models import LoadedModel, build_random_qa_model, load_offline_tokenizer, load_qa_model_and_tokenizer
from .optimize import MODES, InferenceModel, OptimizationRecord, prepare_for_inference
from .parity import max_abs_difference
from .precision import inference_context, resolve_precision
from .timing import LatencyStats, break_even_samples, interleaved_latency, measure_latency
from .tracing import TraceResult, trace_model

__all__ = [
    "MODES",
    "CpuCapabilities",
    "InferenceModel",
    "IpexStatus",
    "LatencyStats",
    "LoadedModel",
    "OptimizationRecord",
    "TraceResult",
    "break_even_samples",
    "build_random_qa_model",
    "cached_capabilities",
    "detect_capabilities",
    "inference_context",
    "interleaved_latency",
    "load_offline_tokenizer",
    "load_qa_model_and_tokenizer",
    "max_abs_difference",
    "measure_latency",
    "optimize_with_ipex",
    "prepare_for_inference",
    "probe_ipex",
    "resolve_precision",
    "trace_model",
]
