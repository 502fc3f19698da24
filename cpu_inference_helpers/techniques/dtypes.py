"""Precision names and torch dtypes: the one place that maps "fp32" / "bf16" / "bf32" / "int8" to dtypes and back."""

from __future__ import annotations

import torch

#: The floating-point precisions every building block understands, by the names the CLIs and tables use.
PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: The quantized precision: weights and activations in int8 (the front door's `precision="int8"`).
INT8 = "int8"
#: fp32 tensors whose matrix products oneDNN may compute in bf16 ("implicit bf16", opt-in, never chosen by auto).
BF32 = "bf32"
PRECISIONS = (*PRECISION_DTYPES, BF32, INT8)
_INT8_DTYPES = (torch.qint8, torch.int8)


def as_dtype(precision: str | torch.dtype) -> torch.dtype:
    """The torch dtype of a floating-point precision given as a name ("fp32", "BF16") or a dtype (torch.bfloat16).

    "bf32" gives torch.float32: its tensors are fp32 (`precision.inference_context` sets its matmul math).

    Raises:
        ValueError: for int8 (a quantized precision, built by `prepare_for_inference`) and for anything else.
    """
    if precision_name(precision) == INT8:
        raise ValueError("int8 is a quantized precision, not a compute dtype: use "
                         "prepare_for_inference(..., precision='int8', calibration=batches)")
    if precision_name(precision) == BF32:  # fp32 tensors; only the matrix products' math differs
        return torch.float32
    if isinstance(precision, torch.dtype):
        return precision
    return PRECISION_DTYPES[precision.strip().lower()]


def precision_name(precision: str | torch.dtype) -> str:
    """The short name ("fp32", "bf16", "bf32", "int8") of a precision given as a name or a dtype.

    Raises:
        ValueError: for any other name, dtype or type, naming the accepted ones.
    """
    accepted = f"choose one of {', '.join(PRECISIONS)} (or torch.float32 / torch.bfloat16 / torch.qint8)"
    if isinstance(precision, torch.dtype):
        if precision in _INT8_DTYPES:
            return INT8
        for name, dtype in PRECISION_DTYPES.items():
            if dtype == precision:
                return name
        raise ValueError(f"unsupported precision {precision}: {accepted}")
    if isinstance(precision, str) and precision.strip().lower() in PRECISIONS:
        return precision.strip().lower()
    raise ValueError(f"unknown precision {precision!r}: {accepted}")
