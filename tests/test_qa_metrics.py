import logging

import pytest

from cpu_inference_helpers.qa.data import SquadExample
from cpu_inference_helpers.qa.metrics import exact_match_score, f1_score, normalize_answer, squad_metrics


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an   apple, a pear ", "apple pear"),
        ("Theatre", "theatre"),  # "the" only as a whole word
        ("U.S.A.", "usa"),
    ],
)
def test_normalize_answer(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_ignores_case_punctuation_and_articles():
    assert exact_match_score("the Broncos.", "Broncos")
    assert not exact_match_score("Denver Broncos", "Broncos")


def test_f1_hand_computed():
    # prediction tokens {cat, sat}; truth {cat, sat, on, mat}: precision 1, recall 1/2 -> F1 2/3
    assert f1_score("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: common = {a? no, "x": 1} -> p = 1/2, r = 1 -> 2/3
    assert f1_score("x x", "x") == pytest.approx(2 / 3)
    assert f1_score("nothing shared", "other words") == 0.0


def _example(qid, *answers):
    return SquadExample(qid, "q?", "context", {"text": list(answers), "answer_start": [0] * len(answers)})


def test_squad_metrics_take_the_best_gold_answer_and_average():
    examples = [_example("1", "Denver Broncos", "Broncos"), _example("2", "1999"), _example("3", "blue whale")]
    predictions = {"1": "broncos", "2": "in 1999", "3": "whale"}
    metrics = squad_metrics(examples, predictions)
    # EM: 1 + 0 + 0; F1: 1 + 2/3 (p 1/2, r 1) + 2/3 (p 1, r 1/2)
    assert metrics["exact_match"] == pytest.approx(100 / 3)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3)


def test_missing_predictions_score_zero_and_unanswerable_questions_are_skipped(caplog):
    examples = [_example("1", "yes"), _example("2", "no"), _example("3")]
    with caplog.at_level(logging.WARNING):
        metrics = squad_metrics(examples, {"1": "yes"})
    assert metrics == {"exact_match": 50.0, "f1": 50.0, "questions": 2}
    assert "no gold answer" in caplog.text
