"""The official SQuAD v1.1 metrics: exact match and token F1 after answer normalisation."""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

from .data import SquadExample

logger = logging.getLogger(__name__)

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation, the articles a/an/the and extra white space (official script)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Harmonic mean of token precision and recall between normalised answers."""
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(examples: Sequence[SquadExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """Exact match and F1 in percent, each the best over a question's gold answers.

    Questions without a prediction score 0 (as in the official script); questions without
    any gold answer cannot be scored and are left out with a warning.
    """
    scored = [example for example in examples if example.answers["text"]]
    if len(scored) < len(examples):
        logger.warning("%d questions have no gold answer and are not scored", len(examples) - len(scored))
    if not scored:
        raise ValueError("no question with a gold answer to score")
    exact, f1 = 0.0, 0.0
    for example in scored:
        prediction = predictions.get(example.id)
        if prediction is None:
            continue
        exact += max(exact_match_score(prediction, truth) for truth in example.answers["text"])
        f1 += max(f1_score(prediction, truth) for truth in example.answers["text"])
    return {"exact_match": 100.0 * exact / len(scored), "f1": 100.0 * f1 / len(scored), "questions": len(scored)}
