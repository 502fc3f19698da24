"""From start/end logits to answer texts: n-best span search as in transformers' utils_qa.py (SQuAD v1)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .data import SquadExample
from .features import Offsets


def best_answer(
    context: str,
    window_logits: Sequence[tuple[np.ndarray, np.ndarray, Offsets]],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> str:
    """The highest-scoring answer text over all windows of one question.

    In each window the `n_best_size` best start and end positions are paired; a pair is
    kept when both tokens lie in the context, end >= start and the span has at most
    `max_answer_length` tokens. The score is start_logit + end_logit. When no pair is
    valid the answer is "empty", as in utils_qa.py.
    """
    candidates: list[tuple[float, int, int]] = []
    for start_logits, end_logits, offsets in window_logits:
        start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
        end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
        for start in start_indexes:
            for end in end_indexes:
                if start >= len(offsets) or end >= len(offsets):
                    continue
                if offsets[start] is None or offsets[end] is None:
                    continue
                if end < start or end - start + 1 > max_answer_length:
                    continue
                score = float(start_logits[start] + end_logits[end])
                candidates.append((score, offsets[start][0], offsets[end][1]))
    if not candidates:
        return "empty"
    # A stable sort on the score alone keeps utils_qa.py's tie order (window, start rank, end rank).
    _, char_start, char_end = sorted(candidates, key=lambda c: c[0], reverse=True)[0]
    text = context[char_start:char_end]
    return text if text else "empty"


def postprocess_predictions(
    examples: Sequence[SquadExample],
    example_ids: Sequence[str],
    offset_mappings: Sequence[Offsets],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Predicted answer text per question id, from the logits of every window."""
    if not len(example_ids) == len(offset_mappings) == len(start_logits) == len(end_logits):
        raise ValueError("features, offsets and logits must have the same length")
    windows_by_example: dict[str, list[int]] = defaultdict(list)
    for index, example_id in enumerate(example_ids):
        windows_by_example[example_id].append(index)
    predictions = {}
    for example in examples:
        windows = [(start_logits[i], end_logits[i], offset_mappings[i]) for i in windows_by_example[example.id]]
        predictions[example.id] = best_answer(example.context, windows, n_best_size, max_answer_length)
    return predictions
