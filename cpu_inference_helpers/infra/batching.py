"""Cutting tokenized windows into batches of one fixed size: the one last-batch policy of every workload.

    for batch, real in fixed_size_batches(features.inputs, 8):
        logits = model(**batch).start_logits[:real]

Every batch has exactly `batch_size` rows: a short last batch is padded by repeating its last row, and
`real` says how many rows are real. Every call then has the shape the modes were prepared and warmed
up on (a compiled graph or a traced profile never re-specialises inside the timed loop), the padded
rows' outputs are dropped, and the batch's time (what ran) is counted against the real rows only, the
same in one process and on every Ray worker.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def fixed_size_batches(inputs: Mapping[str, torch.Tensor], batch_size: int
                       ) -> list[tuple[dict[str, torch.Tensor], int]]:
    """(batch, real rows) pairs covering `inputs` in order, every batch `batch_size` rows (the last one padded)."""
    if batch_size < 1:
        raise ValueError("the batch size must be at least 1")
    total = len(next(iter(inputs.values())))
    if total == 0:
        raise ValueError("there are no windows to batch")
    batches = []
    for start in range(0, total, batch_size):
        real = min(batch_size, total - start)
        batch = {name: tensor[start:start + real] for name, tensor in inputs.items()}
        if real < batch_size:
            batch = {name: torch.cat([tensor, tensor[-1:].expand(batch_size - real, *tensor.shape[1:])])
                     for name, tensor in batch.items()}
        batches.append((batch, real))
    return batches
