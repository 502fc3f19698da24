"""The options of `prepare_for_inference` that paths honour or refuse, and what a builder builds from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from cpu_inference_helpers.techniques.capabilities import CpuCapabilities

Batch = Mapping[str, torch.Tensor]

#: The options of `prepare_for_inference` that paths honour or refuse, with what they mean.
OPTIONS: dict[str, str] = {
    "freeze": "freeze the weights into the graph (torch.jit.freeze; Inductor's freezing)",
    "warmup_steps": "calls on the example inputs before the model is returned",
    "verify": "check the built graph against the same model run eagerly, falling back beyond tolerance",
    "auto_kernel_selection": "IPEX's fp32 Linear kernels: True oneDNN, False MKL (fp32 IPEX paths only)",
    "dynamic_shapes": "dynamic shapes: torch.compile's (compile paths in fp32, bf16, bf32); export's batch and "
                      "sequence dimensions (export paths; default dynamic)",
    "package_path": "where the export paths write their AOTInductor package (.pt2; default: a temporary file)",
    "calibration": "batches for static int8's activation ranges (ipex+jit:int8, compile:int8)",
    "smooth_quant_alpha": "SmoothQuant's migration strength in [0, 1] for static int8 (ipex+jit:int8: "
                          "default `quantization.SMOOTH_QUANT_ALPHA`; compile:int8: "
                          "`pt2e_quantization.PT2E_SMOOTH_QUANT_ALPHA`)",
    "allow_emulated_bf16": "run bf16 where the CPU has no native bf16 (bf16 requests only)",
}


@dataclass(frozen=True)
class BuildOptions:
    """The options a builder reads; what the caller did not give takes these defaults."""

    freeze: bool = True
    warmup_steps: int = 2
    verify: bool = True
    auto_kernel_selection: bool | None = None  # None: measured (`kernel_choice`)
    dynamic_shapes: bool | None = None  # None: measured for frozen fp32, static otherwise
    calibration: tuple[Batch, ...] = ()
    package_path: str | None = None  # export: the .pt2 package to write (None: a temporary file)
    smooth_quant_alpha: float | None = None  # static int8: None takes `quantization.SMOOTH_QUANT_ALPHA`


@dataclass(frozen=True)
class BuildRequest:
    """What a builder builds from: the model (in eval mode), example tensors by name, options, the CPU."""

    model: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    options: BuildOptions
    capabilities: CpuCapabilities
