"""Training windows for extractive QA, with run_qa.py's `prepare_train_features` semantics.

Each question/context pair is tokenized into windows of at most `max_seq_length` tokens that
overlap by `doc_stride` tokens. A window's label is the token span of the (first) gold answer
when the answer lies wholly inside the window's context tokens, else the CLS token (0, 0), as
in transformers' example. Windows are not padded here: `length_grouped_batches` groups windows
of similar length and `collate_windows` pads each batch only to its own longest window.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from cpu_inference_helpers.qa.data import SquadExample
from cpu_inference_helpers.qa.features import fit_questions

logger = logging.getLogger(__name__)


@dataclass
class TrainWindow:
    """One tokenized window with its answer label (token positions; 0 = CLS: no answer here)."""

    input_ids: list[int]
    token_type_ids: list[int]
    start_position: int
    end_position: int

    def __len__(self) -> int:
        return len(self.input_ids)


def locate_answer(context: str, text: str, answer_start: int) -> tuple[int, int] | None:
    """Character span [start, end) of a gold answer in its context, repairing known defects.

    Some SQuAD copies carry answers with leading/trailing spaces whose `answer_start` points at
    the space (e.g. `' 23–16'`). The text is stripped and the start moved past the stripped
    spaces; when the text still is not at that place, the occurrence nearest to `answer_start`
    is used. Returns None when the answer text does not occur in the context at all.
    """
    stripped = text.strip()
    if not stripped:
        return None
    start = answer_start + (len(text) - len(text.lstrip()))
    if context[start : start + len(stripped)] == stripped:
        return start, start + len(stripped)
    occurrences = []
    position = context.find(stripped)
    while position != -1:
        occurrences.append(position)
        position = context.find(stripped, position + 1)
    if not occurrences:
        return None
    nearest = min(occurrences, key=lambda candidate: abs(candidate - answer_start))
    return nearest, nearest + len(stripped)


def prepare_train_windows(
    examples: Sequence[SquadExample],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> list[TrainWindow]:
    """Tokenize examples into labelled training windows (see the module docstring).

    Examples without a locatable answer are left out, with one log line giving their count.
    """
    if not tokenizer.is_fast:
        raise ValueError("QA training features need a fast tokenizer (offset mappings)")
    if doc_stride >= max_seq_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_seq_length ({max_seq_length})")
    usable: list[tuple[SquadExample, tuple[int, int]]] = []
    for example in examples:
        span = None
        if example.answers["text"]:
            span = locate_answer(example.context, example.answers["text"][0], example.answers["answer_start"][0])
        if span is not None:
            usable.append((example, span))
    skipped = len(examples) - len(usable)
    if skipped:
        logger.info("left out %d of %d training questions whose answer is not in the context", skipped, len(examples))
    questions, _ = fit_questions([example for example, _ in usable], tokenizer, max_seq_length, doc_stride)
    encoded = tokenizer(
        questions,
        [example.context for example, _ in usable],
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    windows = []
    for i, sample_index in enumerate(encoded["overflow_to_sample_mapping"]):
        start_char, end_char = usable[sample_index][1]
        offsets = encoded["offset_mapping"][i]
        sequence_ids = encoded.sequence_ids(i)
        context_tokens = [k for k, sequence_id in enumerate(sequence_ids) if sequence_id == 1]
        if not context_tokens:  # a question filling the whole window leaves no context to label
            continue
        first, last = context_tokens[0], context_tokens[-1]
        start_position = end_position = 0  # CLS: the answer is not wholly inside this window
        if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
            start_position = first
            while start_position <= last and offsets[start_position][0] <= start_char:
                start_position += 1
            start_position -= 1
            end_position = last
            while end_position >= first and offsets[end_position][1] >= end_char:
                end_position -= 1
            end_position += 1
        windows.append(
            TrainWindow(encoded["input_ids"][i], encoded["token_type_ids"][i], start_position, end_position)
        )
    return windows


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, megabatch_factor: int = 50
) -> list[list[int]]:
    """Batches of window indices in which lengths are similar, in a seeded random order.

    Indices are shuffled, cut into mega-batches of `megabatch_factor * batch_size`, each sorted
    by length (longest first) and cut into batches; the batch order is then shuffled. Every
    index appears exactly once. This is the Trainer's `group_by_length` idea: little padding,
    but still a random mix of questions from step to step.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    generator = random.Random(seed)
    order = list(range(len(lengths)))
    generator.shuffle(order)
    megabatch = batch_size * megabatch_factor
    batches = []
    for start in range(0, len(order), megabatch):
        group = sorted(order[start : start + megabatch], key=lambda index: -lengths[index])
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    generator.shuffle(batches)
    return batches


def collate_windows(windows: Sequence[TrainWindow], pad_token_id: int = 0, multiple_of: int = 8) -> dict:
    """Pad a batch to its longest window (rounded up to `multiple_of`) and stack the labels."""
    longest = max(len(window) for window in windows)
    length = -(-longest // multiple_of) * multiple_of
    input_ids = torch.full((len(windows), length), pad_token_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(windows), length), dtype=torch.long)
    attention_mask = torch.zeros((len(windows), length), dtype=torch.long)
    for row, window in enumerate(windows):
        size = len(window)
        input_ids[row, :size] = torch.tensor(window.input_ids)
        token_type_ids[row, :size] = torch.tensor(window.token_type_ids)
        attention_mask[row, :size] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "start_positions": torch.tensor([window.start_position for window in windows]),
        "end_positions": torch.tensor([window.end_position for window in windows]),
    }
