"""Whether bf32 is real on a path: measured once per path and Linear shape, not assumed from a version.

bf32 ("implicit bf16": fp32 tensors, matrix products with bf16 inputs and fp32 accumulation) is a
process-wide setting (`precision.fp32_matmul_in_bf16`) that some kernels read and others ignore. Measured
on an Intel Xeon with AMX on 2026-12-03 (torch 2.8, issue 31): `torch.set_float32_matmul_precision("medium")`
makes `x @ w.t()` round to bf16 but leaves `torch.nn.functional.linear` (every `nn.Linear`, so every
matrix product of BERT) at fp32 accuracy. A model prepared "in bf32" on such a path would be fp32 under
another name. So before a path is built in bf32, `bf32_fallback_reason_for_path` builds the same path for a
lone `nn.Linear` of the model's width in bf32 and compares its output with float64: bf16-rounded inputs
leave a relative error of about 1e-3 or more; fp32 arithmetic about 1e-6. Below `ROUNDING_THRESHOLD` the
setting changed nothing, and the front door builds fp32 with that reason, logged and recorded.

    reason = bf32_fallback_reason_for_path("jit", model, example_inputs, capabilities)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.infra.versions import installed_version
from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.registry import BuildOptions, BuildRequest, path_for
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities
from cpu_inference_helpers.techniques.dtypes import BF32
from cpu_inference_helpers.techniques.precision import bf32_fallback_reason, inference_context

logger = logging.getLogger(__name__)

#: Relative error (max |error| / max |exact output|) above which a Linear's products were rounded to bf16.
#: fp32 arithmetic gives ~1e-6 and bf16-rounded inputs ~3e-3 on the probe's layer: the line sits between.
ROUNDING_THRESHOLD = 1e-4
#: Rows of the probe's input at most (batch x sequence): enough for the kernels the real shapes select.
MAX_PROBE_ROWS = 4096
#: Why export never runs bf32: its kernels are compiled into the package, bf32 is read when a kernel runs.
EXPORT_REASON = ("bf32 is a process-wide math mode read when a kernel runs; an AOTInductor package has its "
                 "kernels compiled in, so export builds fp32 (bf32 can run with jit, ipex+jit, compile where "
                 "their kernels honour it)")


@dataclass(frozen=True)
class Bf32Check:
    """What building a lone Linear in bf32 on one path gave: the path it ran as and its relative error."""

    mode: str
    ran_as: str
    in_features: int
    out_features: int
    relative_error: float

    @property
    def rounds(self) -> bool:
        """Whether the products were computed from bf16-rounded inputs (bf32 is real on this path)."""
        return self.relative_error > ROUNDING_THRESHOLD

    def fallback_reason(self) -> str | None:
        """None where bf32 is real; otherwise why fp32 runs instead, with the measurement."""
        if self.rounds:
            return None
        stack = f"torch {installed_version('torch')}"
        ipex = installed_version("intel-extension-for-pytorch")
        if ipex and "ipex" in self.mode:
            stack += f", IPEX {ipex}"
        return (f"bf32 requested, but on this stack ({stack}) the {self.mode} path's matrix products ignore the "
                f"bf32 setting: a {self.in_features}->{self.out_features} Linear built as {self.ran_as} in bf32 "
                f"matches float64 to {self.relative_error:.1e} relative (bf16 rounding leaves > "
                f"{ROUNDING_THRESHOLD:.0e}), so fp32 runs, under its own name; ask for bf16 for speed")


def probe_shape(model: torch.nn.Module, example_inputs: Mapping[str, torch.Tensor]) -> tuple[int, int, int, int]:
    """(in_features, out_features, batch, sequence) of the probe: the model's first Linear, the example's tokens."""
    linear = next((module for module in model.modules() if isinstance(module, torch.nn.Linear)), None)
    in_features, out_features = (linear.in_features, linear.out_features) if linear is not None else (256, 256)
    token_shape = next((tuple(t.shape) for t in example_inputs.values()
                        if isinstance(t, torch.Tensor) and t.dim() == 2 and t.numel() > 0), (1, 64))
    batch, sequence = token_shape
    batch = max(1, min(batch, MAX_PROBE_ROWS // max(sequence, 1)))
    return in_features, out_features, batch, min(sequence, MAX_PROBE_ROWS)


_CHECKS: dict[tuple[str, int, int, int, int], Bf32Check] = {}


def check_bf32_path(mode: str, in_features: int, out_features: int, batch: int, sequence: int,
                    capabilities: CpuCapabilities) -> Bf32Check:
    """Build `mode` in bf32 for a seeded Linear(in_features, out_features) and measure its rounding.

    Measured once per process for each path and shape: what the kernels do is the machine's and the stack's.
    """
    key = (mode, in_features, out_features, batch, sequence)
    if key not in _CHECKS:
        _CHECKS[key] = _measure(mode, in_features, out_features, batch, sequence, capabilities)
    return _CHECKS[key]


def _measure(mode: str, in_features: int, out_features: int, batch: int, sequence: int,
             capabilities: CpuCapabilities) -> Bf32Check:
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(in_features, out_features).eval()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_features, in_features, generator=generator) / in_features ** 0.5)
        layer.bias.zero_()
    inputs = {"input": torch.randn(batch, sequence, in_features, generator=generator)}
    exact = torch.nn.functional.linear(inputs["input"].double(), layer.weight.double())
    request = BuildRequest(layer, inputs, BuildOptions(warmup_steps=1, verify=False), capabilities)
    built = path_for(ModeSpec(mode, BF32)).build(request)
    with inference_context(built.precision, traced=built.traced):
        outputs = built.model(**inputs)
    error = (outputs.double() - exact).abs().max().item() / exact.abs().max().item()
    check = Bf32Check(mode, built.mode, in_features, out_features, error)
    logger.info("bf32 check of %s (ran as %s): relative error %.1e, %s", mode, built.mode, error,
                "bf16 rounding: bf32 is real" if check.rounds else "fp32 accuracy: bf32 changes nothing")
    return check


def bf32_fallback_reason_for_path(mode: str, model: torch.nn.Module, example_inputs: Mapping[str, torch.Tensor],
                                  capabilities: CpuCapabilities) -> str | None:
    """Why `mode` cannot run bf32 here (no AMX; export; kernels that ignore the setting), or None where it can.

    The CPU is asked first (oneDNN's implicit bf16 needs AMX); then, on AMX, the path itself is measured
    (`check_bf32_path`, once per path and shape in a process). A check that fails to run counts as "cannot".
    """
    reason = bf32_fallback_reason(capabilities)
    if reason:
        return reason
    if mode == "export":
        return EXPORT_REASON
    try:
        return check_bf32_path(mode, *probe_shape(model, example_inputs), capabilities).fallback_reason()
    except Exception as error:  # noqa: BLE001 - a path that cannot even build a Linear cannot be trusted with bf32
        return (f"bf32 requested, but checking that the {mode} path honours it failed ({error_summary(error)}), "
                "so fp32 runs")
