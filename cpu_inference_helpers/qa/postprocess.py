"""From start/end logits to answer texts: n-best span search with the semantics of transformers'
examples/pytorch/question-answering/utils_qa.py (`postprocess_qa_predictions`, SQuAD v1)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from cpu_inference_helpers.qa.data import SquadExample
from cpu_inference_helpers.qa.features import Offsets

NBestEntry = dict[str, Any]


def nbest_answers(
    context: str,
    window_logits: Sequence[tuple[np.ndarray, np.ndarray, Offsets]],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> list[NBestEntry]:
    """The `n_best_size` best answer spans over all windows of one question, best first.

    In each window the `n_best_size` best start and end positions are paired; a pair is
    kept when both tokens lie in the context, end >= start and the span has at most
    `max_answer_length` tokens. The score is start_logit + end_logit; ties keep the order
    window, start rank, end rank. Each entry has `start_logit`, `end_logit`, `text` and
    `probability` (softmax of the scores over the kept entries), as in utils_qa's n-best file.
    When nothing is valid, or the only candidate has an empty text, the list starts with the
    placeholder answer "empty", as utils_qa does.
    """
    candidates: list[tuple[float, float, float, int, int]] = []
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
                start_logit, end_logit = float(start_logits[start]), float(end_logits[end])
                candidates.append((start_logit + end_logit, start_logit, end_logit, offsets[start][0], offsets[end][1]))
    # A stable sort on the score alone keeps utils_qa.py's tie order (window, start rank, end rank).
    kept = sorted(candidates, key=lambda candidate: candidate[0], reverse=True)[:n_best_size]
    entries = [
        {"start_logit": start_logit, "end_logit": end_logit, "text": context[char_start:char_end], "score": score}
        for score, start_logit, end_logit, char_start, char_end in kept
    ]
    if not entries or (len(entries) == 1 and entries[0]["text"] == ""):
        entries.insert(0, {"start_logit": 0.0, "end_logit": 0.0, "text": "empty", "score": 0.0})
    scores = np.array([entry.pop("score") for entry in entries])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    for entry, probability in zip(entries, probabilities, strict=True):
        entry["probability"] = float(probability)
    return entries


def best_answer(
    context: str,
    window_logits: Sequence[tuple[np.ndarray, np.ndarray, Offsets]],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> str:
    """The highest-scoring answer text over all windows of one question (see `nbest_answers`)."""
    return nbest_answers(context, window_logits, n_best_size, max_answer_length)[0]["text"]


def postprocess_with_nbest(
    examples: Sequence[SquadExample],
    example_ids: Sequence[str],
    offset_mappings: Sequence[Offsets],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[str, str], dict[str, list[NBestEntry]]]:
    """Predicted answer text and n-best list per question id, from the logits of every window."""
    if not len(example_ids) == len(offset_mappings) == len(start_logits) == len(end_logits):
        raise ValueError("features, offsets and logits must have the same length")
    windows_by_example: dict[str, list[int]] = defaultdict(list)
    for index, example_id in enumerate(example_ids):
        windows_by_example[example_id].append(index)
    predictions, nbest = {}, {}
    for example in examples:
        windows = [(start_logits[i], end_logits[i], offset_mappings[i]) for i in windows_by_example[example.id]]
        nbest[example.id] = nbest_answers(example.context, windows, n_best_size, max_answer_length)
        predictions[example.id] = nbest[example.id][0]["text"]
    return predictions, nbest


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
    return postprocess_with_nbest(
        examples, example_ids, offset_mappings, start_logits, end_logits, n_best_size, max_answer_length
    )[0]
