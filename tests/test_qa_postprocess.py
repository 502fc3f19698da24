import numpy as np

from cpu_inference_helpers.qa.data import SquadExample
from cpu_inference_helpers.qa.postprocess import best_answer, postprocess_predictions

CONTEXT = "alpha beta gamma delta"
# token 0 = [CLS] / question (no offsets), tokens 1..4 = the four context words, token 5 = [SEP]
OFFSETS = [None, (0, 5), (6, 10), (11, 16), (17, 22), None]


def logits(values):
    return np.array(values, dtype=np.float32)


def test_best_valid_span_wins():
    start = logits([9, 1, 5, 0, 0, 9])  # the 9s fall on tokens without offsets
    end = logits([9, 0, 0, 6, 1, 9])
    assert best_answer(CONTEXT, [(start, end, OFFSETS)]) == "beta gamma"


def test_end_before_start_and_too_long_spans_are_rejected():
    start = logits([0, 0, 0, 8, 0, 0])
    end = logits([0, 7, 0, 0, 1, 0])  # best end (token 1) is before the start
    # (start 1, end 1) scores 7, but (start 3, end 4) scores 9; end 1 < start 3 is never paired
    assert best_answer(CONTEXT, [(start, end, OFFSETS)]) == "gamma delta"
    start = logits([0, 5, 0, 0, 0, 0])
    end = logits([0, 0, 0, 0, 9, 0])
    assert best_answer(CONTEXT, [(start, end, OFFSETS)]) == CONTEXT  # tokens 1..4 score 14
    # with max_answer_length 1 only single-token spans are allowed: token 4 (0 + 9) beats token 1 (5 + 0)
    assert best_answer(CONTEXT, [(start, end, OFFSETS)], max_answer_length=1) == "delta"


def test_n_best_limits_the_candidates():
    start = logits([0, 3, 2, 0, 0, 0])
    end = logits([0, 0, 0, 0, 0, 0])
    end[1] = -5  # with n_best 1 the only end candidate is the first max (token 0, no offset) -> nothing valid
    assert best_answer(CONTEXT, [(start, end, OFFSETS)], n_best_size=1) == "empty"
    assert best_answer(CONTEXT, [(start, end, OFFSETS)], n_best_size=20) != "empty"


def test_the_best_window_wins_across_windows():
    weak = (logits([0, 2, 0, 0, 0, 0]), logits([0, 2, 0, 0, 0, 0]), OFFSETS)
    strong = (logits([0, 0, 0, 5, 0, 0]), logits([0, 0, 0, 0, 5, 0]), OFFSETS)
    assert best_answer(CONTEXT, [weak, strong]) == "gamma delta"


def test_postprocess_groups_windows_by_question():
    examples = [
        SquadExample("a", "q", CONTEXT),
        SquadExample("b", "q", "one two three four"),
    ]
    start = np.stack([logits([0, 0, 0, 0, 9, 0]), logits([0, 9, 0, 0, 0, 0]), logits([0, 0, 1, 0, 0, 0])])
    end = np.stack([logits([0, 0, 0, 0, 9, 0]), logits([0, 0, 9, 0, 0, 0]), logits([0, 0, 1, 0, 0, 0])])
    offsets_b = [None, (0, 3), (4, 7), (8, 13), (14, 18), None]
    predictions = postprocess_predictions(
        examples, ["a", "b", "b"], [OFFSETS, offsets_b, offsets_b], start, end
    )
    assert predictions == {"a": "delta", "b": "one two"}
