"""Score a QA model's own answers (eager, fp32) on SQuAD examples: windows, logits, answers, EM/F1.

The quick path for training-time questions ("how good is this checkpoint?"); the run_qa
comparison (`qa.evaluation`) is the path for comparing inference modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from .data import SquadExample
from .features import QAFeatures, prepare_validation_features
from .metrics import squad_metrics
from .postprocess import postprocess_predictions


def predict_answers(
    model: Any, features: QAFeatures, examples: Sequence[SquadExample], batch_size: int = 32, progress: bool = False,
) -> dict[str, str]:
    """Answer per question id: `model` (eager, traced or prepared) over `features`, run_qa's post-processing."""
    starts, ends = [], []
    with torch.inference_mode():
        for batch in tqdm(features.batches(batch_size), total=-(-len(features) // batch_size),
                          desc="scoring", unit="batch", disable=not progress, leave=False):
            outputs = model(**batch)  # a ModelOutput or a traced graph's dict: both index by name
            starts.append(outputs["start_logits"].float().numpy())
            ends.append(outputs["end_logits"].float().numpy())
    return postprocess_predictions(
        examples, features.example_ids, features.offset_mappings, np.concatenate(starts), np.concatenate(ends)
    )


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
    return squad_metrics(examples, predict_answers(model, features, examples, batch_size, progress))
