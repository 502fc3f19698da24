"""Post-processing and metrics against independent oracles of the reference rules.

The oracles are plain re-statements, written for these tests, of the documented rules of:
- transformers' examples/pytorch/question-answering/utils_qa.py, postprocess_qa_predictions
  (SQuAD v1: pair the n_best start and end indexes of every window, drop spans outside the
  context, reversed or longer than max_answer_length, rank by start+end logit with ties in
  window / start-rank / end-rank order, keep n_best, "empty" when nothing or only an empty
  text is left, probabilities = softmax of the kept scores);
- the official SQuAD v1.1 evaluate-v1.1.py (normalise: lower case, drop punctuation, drop
  the articles a/an/the, collapse white space; EM and token-F1, best over the gold answers,
  averaged over the questions, x100).
They are run on the packaged questions with seeded synthetic logits full of ties.
"""

import math
import string
from collections import Counter

import numpy as np
import pytest

from cpu_inference_helpers.models import load_offline_tokenizer
from cpu_inference_helpers.qa.data import load_squad_file, subset_dataset_path
from cpu_inference_helpers.qa.features import prepare_validation_features
from cpu_inference_helpers.qa.metrics import squad_metrics
from cpu_inference_helpers.qa.postprocess import nbest_answers, postprocess_with_nbest


def utils_qa_nbest_oracle(context, windows, n_best_size, max_answer_length):
    ranked = []
    for window_number, (start_logits, end_logits, offsets) in enumerate(windows):
        top_starts = list(np.argsort(start_logits)[::-1][:n_best_size])
        top_ends = list(np.argsort(end_logits)[::-1][:n_best_size])
        for start_rank, start in enumerate(top_starts):
            for end_rank, end in enumerate(top_ends):
                inside = start < len(offsets) and end < len(offsets) and offsets[start] and offsets[end]
                if not inside or end < start or (end - start + 1) > max_answer_length:
                    continue
                score = float(start_logits[start]) + float(end_logits[end])
                text = context[offsets[start][0] : offsets[end][1]]
                ranked.append(((-score, window_number, start_rank, end_rank), text, score))
    ranked.sort(key=lambda item: item[0])
    kept = [(text, score) for _, text, score in ranked[:n_best_size]]
    if len(kept) == 0 or (len(kept) == 1 and kept[0][0] == ""):
        kept = [("empty", 0.0)] + kept
    top = max(score for _, score in kept)
    weights = [math.exp(score - top) for _, score in kept]
    return [(text, weight / sum(weights)) for (text, _), weight in zip(kept, weights, strict=True)]


def official_normalise(text):
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    words = [word for word in text.split() if word not in ("a", "an", "the")]
    return " ".join(words)


def official_squad_v1_oracle(examples, predictions):
    exact = f1 = 0.0
    for example in examples:
        prediction = official_normalise(predictions.get(example.id, "")).split()
        if example.id not in predictions:
            continue  # unanswered: scores 0 but still counts in the total
        best_exact = best_f1 = 0.0
        for gold in example.answers["text"]:
            gold_tokens = official_normalise(gold).split()
            best_exact = max(best_exact, float(prediction == gold_tokens))
            overlap = sum((Counter(prediction) & Counter(gold_tokens)).values())
            if overlap:
                precision, recall = overlap / len(prediction), overlap / len(gold_tokens)
                best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
        exact += best_exact
        f1 += best_f1
    return 100 * exact / len(examples), 100 * f1 / len(examples)


@pytest.fixture(scope="module")
def windows():
    examples = load_squad_file(subset_dataset_path())[:60]
    features = prepare_validation_features(examples, load_offline_tokenizer(), max_seq_length=96, doc_stride=32)
    assert len(features) > 1.5 * len(examples)  # many questions span several windows
    return examples, features


@pytest.mark.parametrize(("n_best_size", "max_answer_length"), [(20, 30), (1, 30), (3, 2), (50, 1), (5, 100)])
@pytest.mark.parametrize("seed", [0, 1])
def test_postprocess_matches_utils_qa_rules(windows, n_best_size, max_answer_length, seed):
    examples, features = windows
    generator = np.random.default_rng(seed)
    shape = features.inputs["input_ids"].shape
    # half-integer logits in a small range: many exact ties between span scores
    start_logits = (generator.integers(-6, 7, size=shape) / 2).astype(np.float32)
    end_logits = (generator.integers(-6, 7, size=shape) / 2).astype(np.float32)
    predictions, nbest = postprocess_with_nbest(
        examples, features.example_ids, features.offset_mappings, start_logits, end_logits,
        n_best_size, max_answer_length,
    )
    for example in examples:
        indexes = [i for i, example_id in enumerate(features.example_ids) if example_id == example.id]
        expected = utils_qa_nbest_oracle(
            example.context, [(start_logits[i], end_logits[i], features.offset_mappings[i]) for i in indexes],
            n_best_size, max_answer_length,
        )
        assert [entry["text"] for entry in nbest[example.id]] == [text for text, _ in expected]
        assert [entry["probability"] for entry in nbest[example.id]] == pytest.approx([p for _, p in expected])
        assert predictions[example.id] == expected[0][0]


def test_an_empty_top_span_is_kept_when_other_candidates_exist():
    """utils_qa returns "" for an empty best span unless it is the only candidate (then "empty")."""
    context = "ab"
    offsets = [None, (0, 0), (0, 2), None]  # token 1 has an empty span
    start, end = np.array([0, 9, 1, 0.0]), np.array([0, 9, 1, 0.0])
    assert nbest_answers(context, [(start, end, offsets)])[0]["text"] == ""
    assert nbest_answers(context, [(start, end, offsets)], max_answer_length=1, n_best_size=1)[0]["text"] == "empty"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_the_official_squad_v1_rules(windows, seed):
    examples, _ = windows
    generator = np.random.default_rng(seed)
    predictions = {}
    for example in examples:
        choice = generator.integers(0, 6)
        gold = example.answers["text"][0]
        if choice == 0:
            predictions[example.id] = gold
        elif choice == 1:  # case, punctuation, articles and spaces the normalisation removes
            predictions[example.id] = f"  The {gold.upper()}!! "
        elif choice == 2:  # a random context span: partial overlaps
            start = int(generator.integers(0, max(1, len(example.context) - 40)))
            predictions[example.id] = example.context[start : start + int(generator.integers(1, 40))]
        elif choice == 3:
            predictions[example.id] = ""
        elif choice == 4:  # gold plus words: partial F1, no EM
            predictions[example.id] = f"{gold} and more besides"
        # choice 5: unanswered
    ours = squad_metrics(examples, predictions)
    exact, f1 = official_squad_v1_oracle(examples, predictions)
    assert ours["exact_match"] == pytest.approx(exact) and ours["f1"] == pytest.approx(f1)
    assert 0 < exact < f1 < 100
