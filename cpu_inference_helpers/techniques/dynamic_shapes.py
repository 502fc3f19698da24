"""Dynamic batch and sequence dimensions for `torch.export`, shared by AOTInductor packages and PT2E int8.

    shapes = batch_and_sequence_dims(inputs, sequence_bound(model))
    exported = torch.export.export(model, (), kwargs=batch_of_two_if_one(inputs), dynamic_shapes=shapes)

Every input's first dimension is the batch and every 2-D input's second the sequence; one `Dim` each, so
export ties them together across inputs. export specialises a dimension of size 1 (it cannot tell 1 from
"any"), so a batch of one example is exported as two copies of it: the same graph, batch still dynamic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

#: The largest batch an exported graph accepts (its dynamic batch dimension's upper bound).
MAX_BATCH = 1024
#: The sequence length bound used when the model's config names none.
DEFAULT_MAX_SEQUENCE = 512


def sequence_bound(model: torch.nn.Module) -> int:
    """The longest sequence `model` takes: its config's `max_position_embeddings`, else DEFAULT_MAX_SEQUENCE."""
    config = getattr(model, "config", None)
    return int(getattr(config, "max_position_embeddings", DEFAULT_MAX_SEQUENCE) or DEFAULT_MAX_SEQUENCE)


def batch_and_sequence_dims(inputs: Mapping[str, torch.Tensor], max_sequence: int,
                            min_sequence: int = 1) -> dict[str, dict[int, Any] | None]:
    """Per input name: {0: batch, 1: sequence} (1-D inputs: batch only, scalars: None)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    sequence = torch.export.Dim("sequence", min=min_sequence, max=max_sequence)
    shapes: dict[str, dict[int, Any] | None] = {}
    for name, tensor in inputs.items():
        dims: dict[int, Any] = {}
        if tensor.dim() >= 1:
            dims[0] = batch
        if tensor.dim() >= 2:
            dims[1] = sequence
        shapes[name] = dims or None
    return shapes


def batch_of_two_if_one(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`inputs` as they are, or, when any has a batch of one, every batched input repeated twice along it."""
    if not any(tensor.dim() >= 1 and tensor.shape[0] == 1 for tensor in inputs.values()):
        return dict(inputs)
    return {name: tensor.repeat(2, *[1] * (tensor.dim() - 1)) if tensor.dim() >= 1 else tensor
            for name, tensor in inputs.items()}
