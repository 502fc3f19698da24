"""Question/context tokenization into overlapping windows, as transformers' run_qa.py does it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from .data import SquadExample

logger = logging.getLogger(__name__)

Offsets = list[tuple[int, int] | None]


@dataclass
class QAFeatures:
    """Model inputs for every window, with what post-processing needs to map tokens back to text."""

    inputs: dict[str, torch.Tensor]
    example_ids: list[str]
    offset_mappings: list[Offsets]

    def __len__(self) -> int:
        return len(self.example_ids)

    def batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Consecutive batches of model inputs (the last one may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield {name: tensor[start : start + batch_size] for name, tensor in self.inputs.items()}


def prepare_validation_features(
    examples: Sequence[SquadExample],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> QAFeatures:
    """Tokenize questions and contexts into windows of `max_seq_length` tokens.

    Long contexts overflow into several windows overlapping by `doc_stride` tokens. Offsets
    of tokens outside the context are set to None so post-processing never picks them.
    Padding is to `max_seq_length`, as run_qa.py's default `--pad_to_max_length`.
    """
    if not tokenizer.is_fast:
        raise ValueError("QA pre-processing needs a fast tokenizer (offset mappings)")
    if doc_stride >= max_seq_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_seq_length ({max_seq_length})")
    if max_seq_length > tokenizer.model_max_length:
        logger.warning(
            "max_seq_length %d exceeds the model's maximum %d; using %d",
            max_seq_length, tokenizer.model_max_length, tokenizer.model_max_length,
        )
        max_seq_length = tokenizer.model_max_length
    pad_on_right = tokenizer.padding_side == "right"
    questions = [example.question.lstrip() for example in examples]  # leading spaces waste tokens
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
    return QAFeatures(inputs, example_ids, offsets)
