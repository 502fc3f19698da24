"""Answers from a QA model: features -> model (eager, traced or prepared) -> logits per window -> run_qa's
post-processing -> answers; and EM/F1 of a model's own answers.

`predict` is the one path every caller takes (the notebooks, training's reference scores, the
SmoothQuant alpha sweep); `compare_modes` times its batches interleaved across modes, so it uses the
two halves, `window_logits` per batch and `answers_from_logits` at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from cpu_inference_helpers.qa.data import SquadExample
from cpu_inference_helpers.qa.features import QAFeatures, prepare_validation_features
from cpu_inference_helpers.qa.metrics import squad_metrics
from cpu_inference_helpers.qa.postprocess import NBestEntry, postprocess_with_nbest


@dataclass
class Predictions:
    """One model's logits for every window and its answer (and n-best list) per question id."""

    start_logits: np.ndarray
    end_logits: np.ndarray
    answers: dict[str, str]
    nbest: dict[str, list[NBestEntry]]


def window_logits(outputs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits of one batch's output (a ModelOutput or a traced graph's dict), in fp32 numpy."""
    return outputs["start_logits"].float().numpy(), outputs["end_logits"].float().numpy()


def answers_from_logits(
    examples: Sequence[SquadExample], features: QAFeatures, start_logits: np.ndarray, end_logits: np.ndarray,
    n_best_size: int = 20, max_answer_length: int = 30,
) -> tuple[dict[str, str], dict[str, list[NBestEntry]]]:
    """run_qa's post-processing: the best span per question over all its windows, and the n-best lists."""
    return postprocess_with_nbest(examples, features.example_ids, features.offset_mappings, start_logits, end_logits,
                                  n_best_size, max_answer_length)


def predict(
    model: Any, features: QAFeatures, examples: Sequence[SquadExample], batch_size: int = 32,
    n_best_size: int = 20, max_answer_length: int = 30, progress: bool = False,
) -> Predictions:
    """Run `model` (eager, traced or prepared) over `features` in batches and post-process its answers."""
    starts, ends = [], []
    with torch.inference_mode():
        for batch in tqdm(features.batches(batch_size), total=-(-len(features) // batch_size),
                          desc="predicting", unit="batch", disable=not progress, leave=False):
            start, end = window_logits(model(**batch))
            starts.append(start)
            ends.append(end)
    start_logits, end_logits = np.concatenate(starts), np.concatenate(ends)
    answers, nbest = answers_from_logits(examples, features, start_logits, end_logits, n_best_size,
                                         max_answer_length)
    return Predictions(start_logits, end_logits, answers, nbest)


def score_model(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[SquadExample],
    max_seq_length: int = 384,
    doc_stride: int = 128,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, float]:
    """SQuAD v1.1 EM/F1 (0-100) of `model`'s answers to `examples`, run_qa's pre- and post-processing."""
    features = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride)
    model.eval()
    return squad_metrics(examples, predict(model, features, examples, batch_size, progress=progress).answers)
