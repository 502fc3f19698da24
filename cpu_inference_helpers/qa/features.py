"""Question/context tokenization into overlapping windows, as transformers' run_qa.py does it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from cpu_inference_helpers.qa.data import SquadExample

logger = logging.getLogger(__name__)

Offsets = list[tuple[int, int] | None]


@dataclass
class QAFeatures:
    """Model inputs for every window, with what post-processing needs to map tokens back to text.

    `max_seq_length` is the window length that was used (after any clamp to the model's limits);
    `truncated_questions` lists the ids of questions shortened to fit (see `fit_questions`).
    """

    inputs: dict[str, torch.Tensor]
    example_ids: list[str]
    offset_mappings: list[Offsets]
    max_seq_length: int = 0
    truncated_questions: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.example_ids)

    def batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Consecutive batches of model inputs (the last one may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield {name: tensor[start : start + batch_size] for name, tensor in self.inputs.items()}


def effective_max_seq_length(
    max_seq_length: int, doc_stride: int, tokenizer: PreTrainedTokenizerBase, model_max_positions: int | None = None
) -> int:
    """The window length that can run: `max_seq_length` clamped to the tokenizer's and the model's limits.

    A clamp is logged. Raises ValueError when `doc_stride` is not smaller than the result,
    naming the clamp, so the user knows which of the two numbers to change.
    """
    limits = {"the tokenizer's model_max_length": tokenizer.model_max_length}
    if model_max_positions:
        limits["the model's max_position_embeddings"] = model_max_positions
    length = max_seq_length
    for name, limit in limits.items():
        if limit and length > limit:
            logger.warning("max_seq_length %d exceeds %s (%d); using %d", length, name, limit, limit)
            length = limit
    if doc_stride >= length:
        clamped = f" (clamped from {max_seq_length} to the model's limit)" if length != max_seq_length else ""
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_seq_length ({length}{clamped})")
    return length


def fit_questions(
    examples: Sequence[SquadExample], tokenizer: PreTrainedTokenizerBase, max_seq_length: int, doc_stride: int
) -> tuple[list[str], list[str]]:
    """Questions (leading spaces removed) that leave every window room for `doc_stride + 1` context tokens.

    The fast tokenizer cannot overflow a context into strided windows when the question takes
    so many tokens that fewer than `doc_stride + 1` remain (it panics or raises "Sequence to
    truncate too short"). Policy: such a question is cut after the last token that fits, and a
    warning names how many were cut. Returns the questions and the ids of the cut ones.
    """
    budget = max_seq_length - tokenizer.num_special_tokens_to_add(pair=True) - doc_stride - 1
    if budget < 1:
        raise ValueError(
            f"max_seq_length {max_seq_length} with doc_stride {doc_stride} leaves no room for a question: "
            "raise max_seq_length or lower doc_stride"
        )
    questions = [example.question.lstrip() for example in examples]  # leading spaces waste tokens
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for index, (ids, offsets) in enumerate(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)):
        if len(ids) <= budget:
            continue
        keep = budget
        while keep > 0:
            question = questions[index][: offsets[keep - 1][1]]
            if len(tokenizer(question, add_special_tokens=False)["input_ids"]) <= budget:
                break
            keep -= 1
        questions[index] = question
        truncated.append(examples[index].id)
    if truncated:
        logger.warning(
            "%d question(s) longer than the %d tokens a window leaves them (max_seq_length %d, doc_stride %d) "
            "were cut to fit, e.g. %s",
            len(truncated), budget, max_seq_length, doc_stride, ", ".join(truncated[:3]),
        )
    return questions, truncated


def prepare_validation_features(
    examples: Sequence[SquadExample],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    model_max_positions: int | None = None,
) -> QAFeatures:
    """Tokenize questions and contexts into windows of `max_seq_length` tokens.

    Long contexts overflow into several windows overlapping by `doc_stride` tokens. Offsets
    of tokens outside the context are set to None so post-processing never picks them.
    Padding is to `max_seq_length`, as run_qa.py's default `--pad_to_max_length`. The length
    is clamped to the tokenizer's and the model's (`model_max_positions`) limits, and overlong
    questions are cut (`fit_questions`); both are logged and recorded in the result.
    """
    if not tokenizer.is_fast:
        raise ValueError("QA pre-processing needs a fast tokenizer (offset mappings)")
    if doc_stride >= max_seq_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_seq_length ({max_seq_length})")
    max_seq_length = effective_max_seq_length(max_seq_length, doc_stride, tokenizer, model_max_positions)
    pad_on_right = tokenizer.padding_side == "right"
    questions, truncated = fit_questions(examples, tokenizer, max_seq_length, doc_stride)
    contexts = [example.context for example in examples]
    encoded = tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    context_index = 1 if pad_on_right else 0
    sample_mapping = encoded.pop("overflow_to_sample_mapping")
    offset_mappings = encoded.pop("offset_mapping")
    example_ids, offsets = [], []
    for i, sample_index in enumerate(sample_mapping):
        sequence_ids = encoded.sequence_ids(i)
        example_ids.append(examples[sample_index].id)
        offsets.append(
            [tuple(o) if sequence_ids[k] == context_index else None for k, o in enumerate(offset_mappings[i])]
        )
    inputs = {name: torch.tensor(values, dtype=torch.long) for name, values in encoded.items()}
    return QAFeatures(inputs, example_ids, offsets, max_seq_length, truncated)
