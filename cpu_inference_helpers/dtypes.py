"""Precision names and torch dtypes: the one place that maps "fp32" / "bf16" to dtypes and back."""

from __future__ import annotations

import torch

#: The precisions every path understands, by the names the CLIs, the tables and `prepare_for_inference` use.
PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


def as_dtype(precision: str | torch.dtype) -> torch.dtype:
    """The torch dtype of a precision given as a name ("fp32", "BF16") or as a dtype (torch.bfloat16).

    Raises:
        ValueError: for any other name, dtype or type, naming the accepted ones.
    """
    accepted = f"choose one of {', '.join(PRECISION_DTYPES)} (or torch.float32 / torch.bfloat16)"
    if isinstance(precision, torch.dtype):
        if precision in PRECISION_DTYPES.values():
            return precision
        raise ValueError(f"unsupported precision {precision}: {accepted}")
    if isinstance(precision, str) and precision.strip().lower() in PRECISION_DTYPES:
        return PRECISION_DTYPES[precision.strip().lower()]
    raise ValueError(f"unknown precision {precision!r}: {accepted}")


def precision_name(precision: str | torch.dtype) -> str:
    """The short name ("fp32", "bf16") of a precision given as a name or a dtype."""
    dtype = as_dtype(precision)
    return next(name for name, value in PRECISION_DTYPES.items() if value == dtype)
