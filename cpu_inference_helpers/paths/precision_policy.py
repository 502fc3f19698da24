"""Every precision decision of the front door, and every precision fallback, each with its reason.

- precision "auto": bf16 where the CPU has native bf16 instructions, fp32 elsewhere (`auto_precision`);
- bf16 without native bf16: fp32, unless the caller allows emulation (`request_precision`);
- bf32, per path (`path_precision`): fp32 without AMX, on export (its kernels are compiled in), and where the
  path's kernels ignore the bf32 setting (measured by `bf32_check`);
- int8's unquantized parts (attention, softmax, GELU; PT2E): bf16 on AMX, fp32 elsewhere (`int8_mixed_bf16`);
- int8's activations (PT2E): 7 bits without VNNI, 8 with it (`int8_reduce_range`).

The table's builders build the precision they are given: none of them falls back in precision.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from cpu_inference_helpers.bf32_check import bf32_fallback_reason_for_path
from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.record import Step
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities
from cpu_inference_helpers.techniques.dtypes import BF32, precision_name
from cpu_inference_helpers.techniques.precision import resolve_precision

logger = logging.getLogger(__name__)


def resolve_auto_precision(capabilities: CpuCapabilities) -> tuple[str, str]:
    """Precision "auto": bf16 where the CPU computes it natively, fp32 elsewhere; with the reason."""
    if capabilities.native_bf16:
        return "bf16", "precision auto: bf16, as this CPU has native bf16 instructions (answers may move slightly)"
    return "fp32", "precision auto: fp32, as this CPU has no native bf16 instructions (bf16 would be slower)"


def auto_precision(capabilities: CpuCapabilities) -> tuple[str, Step]:
    """Precision "auto" for the record: the precision and the "precision" choice saying why."""
    precision, reason = resolve_auto_precision(capabilities)
    return precision, Step("precision", reason)


def request_precision(precision: str, capabilities: CpuCapabilities, allow_emulated_bf16: bool
                      ) -> tuple[str, list[Step]]:
    """The precision every path of the request is built in, and the fallback step when it is not `precision`.

    bf16 without native bf16 instructions runs fp32 (unless `allow_emulated_bf16`); bf32 is decided per path
    (`path_precision`); fp32 and int8 run as asked.
    """
    if precision == "bf16":
        dtype, reason = resolve_precision(precision, capabilities, allow_emulated_bf16)
        if reason:
            logger.warning("%s", reason)
            return precision_name(dtype), [Step("precision", reason)]
    return precision, []


def path_precision(spec: ModeSpec, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor],
                   capabilities: CpuCapabilities) -> tuple[ModeSpec, list[Step]]:
    """The entry to build for `spec`, and the fallback step when bf32 cannot run on its path.

    bf32 runs only where oneDNN implements it (AMX), never on export (an AOTInductor package has its kernels
    compiled in; bf32 is read when a kernel runs), and only on a path whose kernels honour the setting, measured
    once per path on a Linear of the model's width (`bf32_check`). Elsewhere the fp32 entry of the same mode.
    """
    if spec.precision != BF32:
        return spec, []
    reason = bf32_fallback_reason_for_path(spec.mode, model, inputs, capabilities)
    if not reason:
        return spec, []
    logger.warning("%s", reason)
    return ModeSpec(spec.mode, "fp32"), [Step("precision", reason)]


def int8_gemm_autotune(capabilities: CpuCapabilities) -> tuple[bool, Step]:
    """Whether static int8 under `torch.compile` lets Inductor time its C++ GEMM templates against oneDNN; with the
    record's "int8 GEMM kernels" choice saying why.

    The templates' micro-kernels are written for AMX-INT8 and AVX-512 VNNI. On an AVX2-only CPU (AMD EPYC Zen 3,
    2026-12-07) the template Inductor generates computed wrong results (random-bert-tiny's static int8 graph: 0.54
    from the same graph run eagerly, against logits of 0.39; oneDNN's kernel: 0.002), and timing picked it in some
    runs: the check against eager then threw the compiled graph away. There oneDNN's kernels are used untimed.
    """
    if capabilities.has_int8_dot_product:
        return True, Step("int8 GEMM kernels", "Inductor's C++ GEMM templates timed against oneDNN's, as this CPU "
                          "has " + ("AMX-INT8" if capabilities.has_amx else "AVX-512 VNNI"))
    return False, Step("int8 GEMM kernels", "oneDNN's int8 GEMM kernels, untimed: this CPU has neither AMX nor "
                       "AVX-512 VNNI, and Inductor's C++ int8 GEMM template computed wrong results on such a CPU")


def int8_reduce_range(capabilities: CpuCapabilities) -> tuple[bool, Step]:
    """Whether PT2E int8 quantizes activations to 7 bits (X86InductorQuantizer's `reduce_range`); with the record's
    "int8 activation range" choice saying why.

    Without VNNI (AVX-512 VNNI, or AMX) x86 multiplies u8 activations by s8 weights with `vpmaddubsw`, which adds
    each pair of products into 16 bits with saturation: full-range (8-bit) activations can overflow it, and the
    quantizer's own documentation asks for `reduce_range` on such CPUs. With VNNI the products add up in 32 bits.
    """
    if capabilities.has_int8_dot_product:
        return False, Step("int8 activation range", "8-bit activations: this CPU's VNNI adds int8 products in 32 bits")
    return True, Step("int8 activation range", "7-bit activations (reduce_range): without VNNI the u8 x s8 "
                      "products add pairwise into 16 bits with saturation, which full-range activations can overflow")


def int8_mixed_bf16(capabilities: CpuCapabilities) -> tuple[bool, Step]:
    """Whether int8 runs what it leaves unquantized (attention, softmax, GELU) in bf16; with the record's
    "int8 float parts" choice saying why.

    Where the CPU has AMX: its bf16 tiles make those parts several times faster than fp32, and the int8
    kernels then read and write bf16 (Inductor's int8-mixed-bf16). Elsewhere they stay fp32: on an
    AVX512_BF16 CPU without AMX bf16 did not reliably beat fp32 (docs/benchmarks.md), and without native bf16
    it is emulated.
    """
    if capabilities.has_amx:
        return True, Step("int8 float parts",
                          "int8 with the unquantized parts in bf16 (int8-mixed-bf16), as this CPU has AMX")
    return False, Step("int8 float parts", "int8 with the unquantized parts in fp32, as this CPU has no AMX")
