"""The front door: one call that turns a model into a ready inference callable.

    ready = prepare_for_inference(model, example_inputs, mode="ipex+jit", precision="bf16")
    outputs = ready(**inputs)
    print(ready.record.summary())   # what was applied, what fell back and why

Modes compose the techniques of the classic "Efficient Inference on CPU" guide:
`eager`, `jit` (TorchScript trace + freeze), `ipex` (ipex.optimize) and `ipex+jit`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .capabilities import CpuCapabilities, cached_capabilities
from .ipex_support import optimize_with_ipex
from .precision import inference_context, parse_precision, resolve_precision
from .tracing import trace_model

logger = logging.getLogger(__name__)

MODES = ("eager", "jit", "ipex", "ipex+jit")
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


@dataclass
class OptimizationRecord:
    """What `prepare_for_inference` was asked for, what it applied, and what fell back."""

    requested_mode: str
    requested_precision: str
    mode: str
    precision: str
    applied: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0

    @property
    def fell_back(self) -> bool:
        return bool(self.fallbacks)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fell_back": self.fell_back}

    def summary(self) -> str:
        text = (
            f"requested {self.requested_mode}/{self.requested_precision}, "
            f"running {self.mode}/{self.precision} ({', '.join(self.applied) or 'nothing applied'}; "
            f"setup {self.setup_seconds:.2f} s)"
        )
        return text + "".join(f"\n  fallback: {reason}" for reason in self.fallbacks)


class InferenceModel:
    """A callable wrapper that runs the prepared model in the right precision context."""

    def __init__(self, module: Any, dtype: torch.dtype, traced: bool, record: OptimizationRecord):
        self.module = module
        self.dtype = dtype
        self.traced = traced
        self.record = record

    def __call__(self, **inputs: torch.Tensor) -> Any:
        with inference_context(self.dtype, traced=self.traced):
            return self.module(**inputs)

    def __repr__(self) -> str:
        return f"InferenceModel({self.record.summary()})"


def parse_mode(mode: str) -> str:
    """Normalise a mode name ("ipex_jit", "IPEX+JIT" ...), with a clear error for unknown ones."""
    normalised = mode.strip().lower().replace("_", "+").replace("-", "+")
    if normalised == "jit+ipex":
        normalised = "ipex+jit"
    if normalised not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    return normalised


def prepare_for_inference(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    mode: str = "ipex+jit",
    precision: str = "fp32",
    *,
    auto_kernel_selection: bool | None = None,
    allow_emulated_bf16: bool = False,
    freeze: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
    capabilities: CpuCapabilities | None = None,
) -> InferenceModel:
    """Prepare `model` for CPU inference in the requested mode and precision.

    Every step that cannot be applied falls back with a logged reason, recorded in
    the returned model's `record`: IPEX missing or mismatched -> native PyTorch,
    tracing failure -> eager, bf16 without native support -> fp32.

    Args:
        model: a transformers model (or any nn.Module taking keyword tensors).
        example_inputs: a representative batch as a dict of named tensors.
        mode: "eager", "jit", "ipex" or "ipex+jit".
        precision: "fp32" or "bf16" (CPU autocast mixed precision).
        auto_kernel_selection: IPEX fp32 kernel choice; None decides per CPU (oneDNN
            where MKL is slow, i.e. non-Intel x86), True/False forces it.
        allow_emulated_bf16: run bf16 even where the CPU lacks native bf16 instructions.
        freeze, warmup_steps, verify: passed to `trace_model`.
        capabilities: the CPU report to decide with (detected when omitted).
    """
    start = time.perf_counter()
    mode = parse_mode(mode)
    requested_dtype = parse_precision(precision)
    caps = capabilities or cached_capabilities()
    record = OptimizationRecord(mode, _DTYPE_NAMES[requested_dtype], mode, _DTYPE_NAMES[requested_dtype])

    dtype, precision_reason = resolve_precision(requested_dtype, caps, allow_emulated_bf16)
    if precision_reason:
        logger.warning("%s", precision_reason)
        record.fallbacks.append(precision_reason)
        record.precision = _DTYPE_NAMES[dtype]
    if dtype == torch.bfloat16:
        record.applied.append("bf16 autocast")

    model.eval()
    use_ipex, use_jit = mode.startswith("ipex"), mode.endswith("jit")
    if use_ipex:
        if auto_kernel_selection is None:
            auto_kernel_selection = caps.prefers_onednn_fp32
        result = optimize_with_ipex(model, dtype=dtype, auto_kernel_selection=auto_kernel_selection)
        if result.applied:
            model = result.model
            kernels = "oneDNN" if auto_kernel_selection else "default (MKL)"
            record.applied.append(
                "ipex.optimize" + (f" (fp32 kernels: {kernels})" if dtype == torch.float32 else "")
            )
        else:
            record.fallbacks.append(f"IPEX: {result.reason}")
            record.mode = "jit" if use_jit else "eager"

    traced = False
    if use_jit:
        trace = trace_model(model, example_inputs, dtype=dtype, freeze=freeze, warmup_steps=warmup_steps,
                            verify=verify)
        if trace.traced:
            model, traced = trace.model, True
            record.applied.append("torch.jit.trace" + (" + freeze" if trace.frozen else ""))
        else:
            record.fallbacks.append(f"jit: {trace.reason}")
            record.mode = "ipex" if record.mode == "ipex+jit" else "eager"
    record.setup_seconds = time.perf_counter() - start
    logger.info("prepared model: %s", record.summary())
    return InferenceModel(model, dtype, traced, record)
