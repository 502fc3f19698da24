"""int8 inference: the quantized paths of each stack, calibrated on data that is not scored, with logged fallbacks.

Quantizing a Linear layer stores its weight as int8 with a scale per output channel and runs the
matrix product on int8 inputs with an int32 accumulator (AVX512_VNNI, AMX-INT8), rescaling to float
afterwards. The activations need scales too: *static* quantization measures them once on
calibration batches; *dynamic* quantization measures every input as it comes.

The paths, by mode (`prepare_for_inference(..., precision="int8", calibration=batches)`):

- `ipex+jit`: IPEX static int8 with SmoothQuant (`ipex.quantization.prepare`, calibrate, `convert`),
  traced and frozen; needs IPEX and calibration batches.
- `compile`: torchao's int8 dynamic activations + int8 weights (`quantize_`), then `torch.compile`
  with freezing; needs torchao and a C++ compiler.
- `jit`: PyTorch's dynamic int8 Linear (`quantize_dynamic`), traced and frozen.
- `eager`: PyTorch's dynamic int8 Linear.

A path that cannot run falls back to the next simpler one (`ipex+jit` -> `jit`, `compile` -> `eager`)
with one logged reason. The user's model is never modified.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .compiling import compile_model
from .ipex_support import load_ipex, probe_ipex
from .log_levels import logger_level
from .tracing import trace_model

logger = logging.getLogger(__name__)

#: SmoothQuant's migration strength: how much of the activations' outlier range moves into the weights.
#: Chosen with `qa.smoothquant_alpha` on calibration-side questions held out from calibration (never the dev
#: set): for minilm-squad (2026-11-30, 192 questions, answers kept of fp32) 0.5 -> 89.6%, 0.6 -> 92.7%,
#: 0.7 -> 92.2%, 0.8 -> 93.2%, 0.9 -> 92.7%. Plain static int8 (no SmoothQuant) lost 4.6 F1 points on the
#: former minilm-squadshifts (200 questions).
SMOOTH_QUANT_ALPHA = 0.8

Batch = Mapping[str, torch.Tensor]


@dataclass
class Int8Result:
    """What `prepare_int8` built: the callable, the mode it runs as, whether it is a traced graph, and why."""

    model: Callable[..., Any]
    mode: str
    traced: bool
    quantized: bool = True
    warmed_up: bool = False  # traced and compiled paths were warmed up where they were built
    applied: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    seconds: float = 0.0


def quantize_dynamic_linear(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose Linear layers run PyTorch's dynamic int8 kernels (per-tensor activation scales
    computed per call, int8 weights); the simplest int8 baseline, on every stack."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's eager-mode API announces its deprecation
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def quantize_with_ipex(
    model: torch.nn.Module, example_inputs: Batch, calibration: Iterable[Batch], alpha: float | None = None,
) -> torch.jit.ScriptModule:
    """IPEX static int8 with SmoothQuant: insert observers, run the calibration batches, convert, trace, freeze.

    Raises whatever IPEX raises; `prepare_int8` turns that into a logged fallback.
    """
    ipex = load_ipex()
    if ipex is None:
        raise RuntimeError(f"IPEX is not usable: {probe_ipex().reason}")
    from intel_extension_for_pytorch.quantization import convert, prepare

    qconfig = ipex.quantization.get_smooth_quant_qconfig_mapping(alpha=SMOOTH_QUANT_ALPHA if alpha is None else alpha)
    inputs = dict(example_inputs)
    # IPEX's quantizer logs "[NotSupported]BatchNorm folding failed" for every model without BatchNorm.
    with torch.no_grad(), warnings.catch_warnings(), logger_level("IPEX"):
        warnings.simplefilter("ignore")
        prepared = prepare(copy.deepcopy(model).eval(), qconfig, example_kwarg_inputs=inputs, inplace=False)
        for batch in calibration:
            prepared(**batch)
        converted = convert(prepared)
        traced = torch.jit.freeze(torch.jit.trace(converted, example_kwarg_inputs=inputs, strict=False))
        for _ in range(2):  # IPEX's int8 fusion passes run on the first calls
            traced(**inputs)
    return traced


def quantize_with_torchao(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with torchao's int8 dynamic-activation, int8-weight Linear layers (compile it next)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantized = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
    return quantized


def prepare_int8(
    model: torch.nn.Module,
    example_inputs: Batch,
    mode: str,
    calibration: Iterable[Batch] | None = None,
    *,
    freeze: bool = True,
    warmup_steps: int = 2,
) -> Int8Result:
    """Build the int8 path of `mode` (see the module's table), falling back with a logged reason.

    Args:
        model: the fp32 model; it is left unchanged.
        example_inputs: a batch of the shapes that will run (tracing and compiling specialise to it).
        mode: "ipex+jit", "ipex", "compile", "jit" or "eager".
        calibration: batches that are NOT the ones you evaluate (static int8 only: IPEX's path).
        freeze, warmup_steps: as for `prepare_for_inference`.
    """
    start = time.perf_counter()
    result = Int8Result(model, mode, traced=False)

    def fall_back(to: str, reason: str) -> None:
        logger.warning("int8 %s not applied, using int8 %s: %s", result.mode, to, reason)
        result.fallbacks.append(f"int8 {result.mode}: {reason}")
        result.mode = to

    if mode == "ipex":
        fall_back("eager", "IPEX's int8 kernels run only inside its TorchScript graph: use mode ipex+jit")
    if result.mode == "ipex+jit":
        calibration = list(calibration or [])
        if not probe_ipex().usable:
            fall_back("jit", f"IPEX is not usable here ({probe_ipex().reason})")
        elif not calibration:
            fall_back("jit", "static int8 needs calibration batches (calibration=...), none were given")
        else:
            try:
                result.model = quantize_with_ipex(model, example_inputs, calibration)
                result.traced = result.warmed_up = True
                result.applied.append(f"IPEX static int8 (SmoothQuant alpha {SMOOTH_QUANT_ALPHA}, "
                                      f"{len(calibration)} calibration batches) + trace + freeze")
            except Exception as error:  # IPEX missing, or its quantizer failing on this model
                fall_back("jit", f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}")
    if result.mode == "compile":
        if importlib.util.find_spec("torchao") is None:
            fall_back("eager", "torchao is not installed (pip install torchao)")
        else:
            try:
                quantized = quantize_with_torchao(model)
            except Exception as error:
                fall_back("eager", f"torchao's quantize_ failed: {type(error).__name__}: {error}")
            else:
                compiled = compile_model(quantized, example_inputs, freezing=freeze, warmup_steps=warmup_steps,
                                         verify=False)
                if compiled.compiled:
                    result.model, result.warmed_up = compiled.model, True
                    result.applied.append("torchao int8 dynamic activations + int8 weights, torch.compile"
                                          + (" (freezing)" if freeze else ""))
                else:
                    fall_back("eager", f"torch.compile of the torchao model failed: {compiled.reason}")
    if result.mode in ("jit", "eager"):
        try:
            quantized = quantize_dynamic_linear(model)
        except Exception as error:  # e.g. no quantized engine for this CPU
            result.fallbacks.append(f"int8: dynamic quantization failed ({type(error).__name__}: {error}); fp32 runs")
            logger.warning("int8 not applied, running fp32: %s", result.fallbacks[-1])
            result.mode, result.model, result.quantized = "eager", model, False
            result.seconds = time.perf_counter() - start
            return result
        result.model = quantized
        result.applied.append("dynamic int8 Linear (torch.ao quantize_dynamic)")
        if result.mode == "jit":
            trace = trace_model(quantized, example_inputs, freeze=freeze, warmup_steps=warmup_steps)
            if trace.traced:
                result.model, result.traced, result.warmed_up = trace.model, True, True
                result.applied.append("torch.jit.trace" + (" + freeze" if trace.frozen else ""))
            else:
                fall_back("eager", f"tracing the int8 model failed: {trace.reason}")
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class HandQuantizedLinear:
    """One Linear layer quantized by hand, with every intermediate a reader may want to look at."""

    weight_int8: torch.Tensor  # (out, in) int8, symmetric: w ~ weight_int8 * weight_scale[:, None]
    weight_scale: torch.Tensor  # (out,) one scale per output channel
    input_uint8: torch.Tensor  # (batch, in) uint8, affine: x ~ (input_uint8 - zero_point) * input_scale
    input_scale: float
    input_zero_point: int
    accumulator: torch.Tensor  # (batch, out) int32: sum over `in` of (input_uint8 - zero_point) * weight_int8
    output: torch.Tensor  # (batch, out) float: accumulator * input_scale * weight_scale + bias


def quantize_linear_by_hand(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                            ) -> HandQuantizedLinear:
    """What an int8 Linear computes, spelled out: per-channel symmetric int8 weights, per-tensor affine
    uint8 activations (the scheme of PyTorch's and IPEX's static int8), an int32 accumulator, one rescale.

    Args:
        x: (batch, in) float activations; weight: (out, in) float; bias: (out,) float or None.
    """
    weight_scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
    weight_int8 = torch.clamp(torch.round(weight / weight_scale[:, None]), -127, 127).to(torch.int8)
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    input_scale = max(high - low, 1e-8) / 255
    zero_point = int(round(-low / input_scale))
    input_uint8 = torch.clamp(torch.round(x / input_scale) + zero_point, 0, 255).to(torch.uint8)
    centred = input_uint8.to(torch.int32) - zero_point
    accumulator = (centred.to(torch.int64) @ weight_int8.to(torch.int64).t()).to(torch.int32)
    output = accumulator.to(torch.float32) * input_scale * weight_scale[None, :]
    if bias is not None:
        output = output + bias
    return HandQuantizedLinear(weight_int8, weight_scale, input_uint8, input_scale, zero_point, accumulator, output)
