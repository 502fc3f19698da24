import pytest

from cpu_inference_helpers.qa.data import SquadExample
from cpu_inference_helpers.qa.features import prepare_validation_features

LONG_CONTEXT = " ".join(f"word{i}" for i in range(120)) + " The answer is Paris. " + " ".join(
    f"tail{i}" for i in range(60)
)


@pytest.fixture
def examples():
    start = LONG_CONTEXT.index("Paris")
    return [
        SquadExample("long", "  Where is the answer?", LONG_CONTEXT, {"text": ["Paris"], "answer_start": [start]}),
        SquadExample("short", "Who?", "Ada wrote it.", {"text": ["Ada"], "answer_start": [0]}),
    ]


def test_long_contexts_overflow_into_overlapping_windows(examples, tokenizer):
    features = prepare_validation_features(examples, tokenizer, max_seq_length=64, doc_stride=16)
    assert features.example_ids.count("long") > 2 and features.example_ids.count("short") == 1
    assert features.inputs["input_ids"].shape == (len(features), 64)
    # every window starts with [CLS] question [SEP]
    question_ids = tokenizer("Where is the answer?", add_special_tokens=False)["input_ids"]
    for window in (i for i, e in enumerate(features.example_ids) if e == "long"):
        ids = features.inputs["input_ids"][window].tolist()
        assert ids[: len(question_ids) + 2] == [tokenizer.cls_token_id, *question_ids, tokenizer.sep_token_id]
    windows = [i for i, e in enumerate(features.example_ids) if e == "long"]
    spans = [[o for o in features.offset_mappings[i] if o is not None] for i in windows]
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert later[0][0] < earlier[-1][1], "consecutive windows must overlap"
    # some window contains the answer's characters among its context offsets
    start = LONG_CONTEXT.index("Paris")
    assert any(any(o[0] <= start < o[1] for o in span) for span in spans)


def test_only_context_tokens_keep_offsets(examples, tokenizer):
    features = prepare_validation_features(examples[1:], tokenizer, max_seq_length=32, doc_stride=8)
    offsets = features.offset_mappings[0]
    tokens = tokenizer.convert_ids_to_tokens(features.inputs["input_ids"][0])
    kept = [token for token, offset in zip(tokens, offsets, strict=True) if offset is not None]
    assert kept == ["ada", "wrote", "it", "."]


def test_batches_cover_every_window(examples, tokenizer):
    features = prepare_validation_features(examples, tokenizer, max_seq_length=64, doc_stride=16)
    sizes = [batch["input_ids"].shape[0] for batch in features.batches(3)]
    assert sum(sizes) == len(features) and max(sizes) == 3


def test_stride_must_be_smaller_than_the_window(examples, tokenizer):
    with pytest.raises(ValueError, match="doc_stride"):
        prepare_validation_features(examples, tokenizer, max_seq_length=64, doc_stride=64)


def test_questions_reach_the_tokenizer_without_their_leading_spaces(examples, tokenizer):
    """run_qa.py strips them (a BPE tokenizer would spend tokens on them; BERT's ignores them, so spy on it)."""
    from cpu_inference_helpers.qa.features import fit_questions

    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, text, *args, **kwargs):
            seen.append(text)
            return tokenizer(text, *args, **kwargs)

    questions, cut = fit_questions(examples, Spy(), max_seq_length=64, doc_stride=16)
    assert questions == ["Where is the answer?", "Who?"] and cut == []
    assert seen[0] == ["Where is the answer?", "Who?"]
