"""Training windows: run_qa.py's labelling rules, answer repair, length grouping and padding."""

import pytest
import torch

from cpu_inference_helpers.models import load_offline_tokenizer
from cpu_inference_helpers.qa.data import load_squad_file, subset_dataset_path
from cpu_inference_helpers.training.features import (
    collate_windows,
    length_grouped_batches,
    locate_answer,
    prepare_train_windows,
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_offline_tokenizer()


def test_locate_answer_repairs_leading_space_and_wrong_start():
    context = "The score was 23–16 in the end, 23–16 again."
    assert locate_answer(context, " 23–16", context.index("23") - 1) == (14, 19)
    assert locate_answer(context, "23–16", 30) == (32, 37)  # wrong start: the nearest occurrence
    assert locate_answer(context, "24–16", 14) is None
    assert locate_answer(context, "   ", 0) is None


def test_windows_label_the_answer_tokens_or_cls(tokenizer):
    """Every labelled span covers the gold answer; CLS exactly where the window misses part of it.

    The oracle is the rule as run_qa.py states it, checked on characters: a window holds the
    answer when its context tokens cover [start_char, end_char).
    """
    examples = load_squad_file(subset_dataset_path())[:40]
    windows = prepare_train_windows(examples, tokenizer, max_seq_length=64, doc_stride=16)
    encoded = tokenizer(
        [e.question.lstrip() for e in examples], [e.context for e in examples], truncation="only_second",
        max_length=64, stride=16, return_overflowing_tokens=True, return_offsets_mapping=True,
    )
    assert len(windows) == len(encoded["input_ids"]) > len(examples)  # long contexts overflow
    labelled = cls = 0
    for i, window in enumerate(windows):
        example = examples[encoded["overflow_to_sample_mapping"][i]]
        start_char, end_char = locate_answer(example.context, example.answers["text"][0],
                                             example.answers["answer_start"][0])
        offsets, sequence_ids = encoded["offset_mapping"][i], encoded.sequence_ids(i)
        context_offsets = [o for o, s in zip(offsets, sequence_ids, strict=True) if s == 1]
        holds_answer = context_offsets[0][0] <= start_char and context_offsets[-1][1] >= end_char
        assert window.input_ids == encoded["input_ids"][i]
        if not holds_answer:
            assert (window.start_position, window.end_position) == (0, 0)
            cls += 1
            continue
        labelled += 1
        assert sequence_ids[window.start_position] == sequence_ids[window.end_position] == 1
        span = example.context[offsets[window.start_position][0] : offsets[window.end_position][1]]
        assert example.context[start_char:end_char] in span
        assert len(span) < len(example.context[start_char:end_char]) + 25  # tight: whole tokens only
    assert labelled and cls


def test_length_grouped_batches_cover_every_window_once_and_group_lengths():
    lengths = [(7 * i) % 300 + 20 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=16, seed=3)
    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(1000))
    assert batches == length_grouped_batches(lengths, batch_size=16, seed=3)
    assert batches != length_grouped_batches(lengths, batch_size=16, seed=4)
    padded = sum(16 * max(lengths[i] for i in batch) for batch in batches)
    random_order = [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]
    padded_random = sum(16 * max(lengths[i] for i in batch) for batch in random_order)
    assert padded < 0.7 * padded_random
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_batches(lengths, batch_size=0, seed=0)


def test_collate_pads_each_batch_to_its_own_longest_window(tokenizer):
    examples = load_squad_file(subset_dataset_path())[:6]
    windows = prepare_train_windows(examples, tokenizer, max_seq_length=384, doc_stride=128)
    batch = collate_windows(windows, tokenizer.pad_token_id)
    longest = max(len(window) for window in windows)
    assert batch["input_ids"].shape[1] == -(-longest // 8) * 8 < 384
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(window) for window in windows]
    assert torch.equal(batch["start_positions"], torch.tensor([w.start_position for w in windows]))
