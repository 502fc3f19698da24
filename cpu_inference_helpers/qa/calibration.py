"""Calibration windows for static int8: training-side text (SQuADShifts), never the questions being scored."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from cpu_inference_helpers.qa.data import SquadExample, load_squad_file
from cpu_inference_helpers.qa.features import prepare_validation_features

logger = logging.getLogger(__name__)

#: How many windows static int8 calibrates on by default (run_qa's --calibration_windows).
DEFAULT_CALIBRATION_WINDOWS = 64


def calibration_dataset_path() -> Path:
    """The packaged calibration set: 256 questions of SQuADShifts' new_wiki split (part of the checkpoint's
    training data, disjoint from SQuAD v1.1 dev; see data/README.md)."""
    return Path(str(resources.files("cpu_inference_helpers") / "data" / "squadshifts_calibration.json.xz"))


def load_calibration_examples(source: str | Path | None = None) -> list[SquadExample]:
    """The calibration questions and contexts: `source` (any SQuAD-format file), or the packaged set."""
    return load_squad_file(Path(source) if source is not None else calibration_dataset_path())


def require_disjoint(calibration: Sequence[SquadExample], evaluated: Sequence[SquadExample]) -> None:
    """Refuse calibration data that shares a question id or a context with the questions being scored.

    Raises:
        ValueError: naming how many are shared and what to pass instead.
    """
    shared_ids = {e.id for e in calibration} & {e.id for e in evaluated}
    shared_contexts = {e.context for e in calibration} & {e.context for e in evaluated}
    if shared_ids or shared_contexts:
        raise ValueError(
            f"the calibration data shares {len(shared_ids)} question ids and {len(shared_contexts)} contexts with "
            "the questions being evaluated: int8 scales fitted on them would flatter the accuracy. Calibrate on "
            "other text (--calibration_file; the default is the packaged SQuADShifts set)"
        )


def calibration_batches(
    examples: Sequence[SquadExample],
    tokenizer: Any,
    max_seq_length: int,
    doc_stride: int,
    windows: int = DEFAULT_CALIBRATION_WINDOWS,
    batch_size: int = 8,
    model_max_positions: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The first `windows` question/context windows of `examples`, tokenized exactly like the evaluation
    windows (same length, stride and padding), in batches of `batch_size`.

    Raises:
        ValueError: for `windows` or `batch_size` below 1.
    """
    if windows < 1 or batch_size < 1:
        raise ValueError(f"calibration needs at least one window and a batch size of at least 1 "
                         f"(got {windows} windows, batch size {batch_size})")
    features = prepare_validation_features(list(examples[: 4 * windows]), tokenizer, max_seq_length, doc_stride,
                                           model_max_positions=model_max_positions)
    if len(features) < windows:
        logger.warning("the calibration data gives %d windows, fewer than the %d asked for: calibrating on all",
                       len(features), windows)
    batches, taken = [], 0
    for batch in features.batches(batch_size):
        keep = min(batch_size, windows - taken)
        batches.append({name: tensor[:keep] for name, tensor in batch.items()})
        taken += keep
        if taken >= windows:
            break
    return batches
