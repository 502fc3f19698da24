"""int8 inference: the quantized paths of each stack, calibrated on data that is not scored, with logged fallbacks.

Quantizing a Linear layer stores its weight as int8 with a scale per output channel and runs the
matrix product on int8 inputs with an int32 accumulator (AVX512_VNNI, AMX-INT8), rescaling to float
afterwards. The activations need scales too: *static* quantization measures them once on
calibration batches; *dynamic* quantization measures every input as it comes.

The paths, by mode (`prepare_for_inference(..., precision="int8", calibration=batches)`):

- `ipex+jit`: IPEX static int8 with SmoothQuant (`ipex.quantization.prepare`, calibrate, `convert`),
  traced and frozen; needs IPEX and calibration batches.
- `compile`: PT2E int8 (`X86InductorQuantizer` on a strict export, dynamic activations;
  `pt2e_quantization`), lowered by `torch.compile` with freezing to oneDNN int8 kernels, its unquantized parts
  in bf16 on AMX; needs a C++ compiler (torch.ao's PT2E on torch 2.8, torchao's on the modern stack).
- `export`: torchao's int8 dynamic activations + int8 weights (`quantize_`), exported with AOTInductor.
- `jit`: PyTorch's dynamic int8 Linear (`quantize_dynamic`), traced and frozen.
- `eager`: PyTorch's dynamic int8 Linear.

These are the building blocks; the registry (`registry.PATHS`) builds each path from them with the
front door's options, checks the graph against the same quantized model run eagerly (except IPEX's
static int8, whose fused kernels have no eager twin), and falls back
to the next simpler path (`ipex+jit` -> `jit`, `compile` -> `eager`) with one logged reason. The
user's model is never modified.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from cpu_inference_helpers.infra.log_levels import logger_level
from cpu_inference_helpers.techniques.ipex_support import load_ipex, probe_ipex

logger = logging.getLogger(__name__)

#: SmoothQuant's migration strength: how much of the activations' outlier range moves into the weights.
#: Chosen with `qa.smoothquant_alpha` on calibration-side questions held out from calibration (never the dev
#: set): for minilm-squad (2026-11-30, 192 questions, answers kept of fp32) 0.5 -> 89.6%, 0.6 -> 92.7%,
#: 0.7 -> 92.2%, 0.8 -> 93.2%, 0.9 -> 92.7%. Plain static int8 (no SmoothQuant) lost 4.6 F1 points on the
#: former minilm-squadshifts (200 questions).
SMOOTH_QUANT_ALPHA = 0.8

Batch = Mapping[str, torch.Tensor]


def quantize_dynamic_linear(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose Linear layers run PyTorch's dynamic int8 kernels (per-tensor activation scales
    computed per call, int8 weights); the simplest int8 baseline, on every stack."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's eager-mode API announces its deprecation
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def calibrated_ipex_int8(
    model: torch.nn.Module, example_inputs: Batch, calibration: Iterable[Batch], alpha: float | None = None,
) -> torch.nn.Module:
    """IPEX static int8 with SmoothQuant, before tracing: insert observers, run the calibration batches, convert.

    The result runs eagerly (quantize / dequantize around fp32 kernels); tracing and freezing it gives IPEX's
    fused int8 kernels, which the table's ipex+jit:int8 path does (`prepare_for_inference(..., mode="ipex+jit",
    precision="int8", calibration=..., smooth_quant_alpha=...)`). Raises whatever IPEX raises.
    """
    ipex = load_ipex()
    if ipex is None:
        raise RuntimeError(f"IPEX is not usable: {probe_ipex().reason}")
    from intel_extension_for_pytorch.quantization import convert, prepare

    qconfig = ipex.quantization.get_smooth_quant_qconfig_mapping(alpha=SMOOTH_QUANT_ALPHA if alpha is None else alpha)
    # IPEX's quantizer logs "[NotSupported]BatchNorm folding failed" for every model without BatchNorm.
    with torch.no_grad(), warnings.catch_warnings(), logger_level("IPEX"):
        warnings.simplefilter("ignore")
        prepared = prepare(copy.deepcopy(model).eval(), qconfig, example_kwarg_inputs=dict(example_inputs),
                           inplace=False)
        for batch in calibration:
            prepared(**batch)
        return convert(prepared)


def quantize_with_torchao(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with torchao's int8 dynamic-activation, int8-weight Linear layers (compile it next)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantized = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
    return quantized


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
