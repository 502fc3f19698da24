"""The official SQuAD v1.1 metrics: exact match and token F1 after answer normalisation."""

from __future__ import annotations

import logging
import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

from cpu_inference_helpers.qa.data import SquadExample

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


def question_scores(examples: Sequence[SquadExample], predictions: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """(exact match, F1) in [0, 1] per scorable question id, each the best over its gold answers.

    Questions without a prediction score 0 (as in the official script); questions without
    any gold answer cannot be scored and are left out.
    """
    scores = {}
    for example in examples:
        if not example.answers["text"]:
            continue
        prediction = predictions.get(example.id)
        if prediction is None:
            scores[example.id] = (0.0, 0.0)
            continue
        scores[example.id] = (
            float(max(exact_match_score(prediction, truth) for truth in example.answers["text"])),
            max(f1_score(prediction, truth) for truth in example.answers["text"]),
        )
    return scores


def squad_metrics(examples: Sequence[SquadExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """Exact match and F1 in percent, averaged over the questions that have a gold answer.

    Questions without a prediction score 0 (as in the official script); questions without
    any gold answer cannot be scored and are left out with a warning.
    """
    scores = question_scores(examples, predictions)
    if len(scores) < len(examples):
        logger.warning("%d questions have no gold answer and are not scored", len(examples) - len(scores))
    if not scores:
        raise ValueError("no question with a gold answer to score")
    exact = sum(em for em, _ in scores.values())
    f1 = sum(f1 for _, f1 in scores.values())
    return {"exact_match": 100.0 * exact / len(scores), "f1": 100.0 * f1 / len(scores), "questions": len(scores)}


def paired_f1_change(
    examples: Sequence[SquadExample], predictions: Mapping[str, str], reference: Mapping[str, str]
) -> tuple[float, float]:
    """Mean F1 change (percentage points) of `predictions` against `reference`, and its 95% half-width.

    Both are scored on the same questions, so the noise of the change is that of the paired
    per-question differences (normal approximation, 1.96 standard errors): a change smaller
    than the half-width is not distinguishable from zero on this many questions.
    """
    mine, theirs = question_scores(examples, predictions), question_scores(examples, reference)
    differences = [100.0 * (mine[key][1] - theirs[key][1]) for key in theirs]
    if not differences:
        raise ValueError("no question with a gold answer to score")
    mean = sum(differences) / len(differences)
    if len(differences) < 2:
        return mean, float("inf")
    variance = sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)
    return mean, 1.96 * math.sqrt(variance / len(differences))
