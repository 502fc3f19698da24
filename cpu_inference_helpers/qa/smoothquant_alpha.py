"""Choose SmoothQuant's alpha for IPEX static int8 on calibration-side data, never on the scored set.

    python -m cpu_inference_helpers.qa.smoothquant_alpha --alphas 0.5,0.6,0.7,0.8,0.9

The int8 model is calibrated, as run_qa calibrates it, on the first `--calibration_windows`
windows of the packaged SQuADShifts calibration set; each alpha is then judged on the rest of that
set (questions whose windows were not used to calibrate): the share of fp32 answers it keeps, and
its F1 against the gold answers. The SQuAD dev set is never read. Needs IPEX (the legacy stack).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cpu_inference_helpers.infra.cli_logging import configure_cli_logging
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.models import DEFAULT_MODEL, load_qa_model_and_tokenizer
from cpu_inference_helpers.qa.calibration import (
    DEFAULT_CALIBRATION_WINDOWS,
    calibration_batches,
    load_calibration_examples,
)
from cpu_inference_helpers.qa.features import prepare_validation_features
from cpu_inference_helpers.qa.metrics import squad_metrics
from cpu_inference_helpers.qa.predict import predict
from cpu_inference_helpers.techniques.attention import with_attention_implementation
from cpu_inference_helpers.techniques.ipex_support import probe_ipex
from cpu_inference_helpers.techniques.quantization import SMOOTH_QUANT_ALPHA, quantize_with_ipex

logger = logging.getLogger(__name__)


def sweep_alpha(
    model_name: str = DEFAULT_MODEL,
    alphas: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    calibration_windows: int = DEFAULT_CALIBRATION_WINDOWS,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> list[dict[str, float]]:
    """For each alpha: answers kept of fp32 and F1 on the held-out calibration-side questions."""
    if not probe_ipex().usable:
        raise RuntimeError(f"choosing SmoothQuant's alpha needs IPEX's static int8: {probe_ipex().reason}")
    if not alphas or any(not 0.0 <= alpha <= 1.0 for alpha in alphas):
        raise ValueError(f"alphas must lie in [0, 1], got {list(alphas)}")
    loaded = load_qa_model_and_tokenizer(model_name)
    model = with_attention_implementation(loaded.model, "eager")  # as auto:int8 runs it
    examples = load_calibration_examples()
    batches = calibration_batches(examples, loaded.tokenizer, max_seq_length, doc_stride, calibration_windows)
    # calibration_batches takes the first windows of these questions, in order
    held_out = held_out_questions(examples, loaded.tokenizer, calibration_windows, max_seq_length, doc_stride)
    if not held_out:
        raise ValueError("every calibration question was used to calibrate: lower --calibration_windows")
    held_features = prepare_validation_features(held_out, loaded.tokenizer, max_seq_length, doc_stride)
    reference = predict(model, held_features, held_out, batch_size=16).answers
    rows = [{"alpha": "fp32", "same_answers": 1.0, **squad_metrics(held_out, reference)}]
    for alpha in tqdm(alphas, desc="alphas"):
        quantized = quantize_with_ipex(model, batches[0], batches, alpha=alpha)
        answers = predict(quantized, held_features, held_out, batch_size=16).answers
        same = float(np.mean([answers[key] == reference[key] for key in reference]))
        rows.append({"alpha": alpha, "same_answers": same, **squad_metrics(held_out, answers)})
        logger.info("alpha %.2f: %.1f%% of fp32 answers kept", alpha, 100 * same)
    logger.info("%d held-out questions (%d windows), calibrated on %d windows",
                len(held_out), len(held_features), calibration_windows)
    return rows


def held_out_questions(examples: Sequence, tokenizer: Any, calibration_windows: int, max_seq_length: int = 384,
                       doc_stride: int = 128) -> list:
    """The calibration-side questions none of whose windows is among the first `calibration_windows`."""
    windows = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride)
    used_ids = set(windows.example_ids[:calibration_windows])
    return [example for example in examples if example.id not in used_ids]


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.qa.smoothquant_alpha`."""
    parser = argparse.ArgumentParser(prog="python -m cpu_inference_helpers.qa.smoothquant_alpha", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", default=DEFAULT_MODEL)
    parser.add_argument("--alphas", default="0.5,0.6,0.7,0.8,0.9", help="comma-separated (default: %(default)s)")
    parser.add_argument("--calibration_windows", type=int, default=DEFAULT_CALIBRATION_WINDOWS)
    args = parser.parse_args(argv)
    configure_cli_logging(logging.INFO, "%(levelname)s %(name)s: %(message)s")
    try:
        alphas = [float(text) for text in comma_list(args.alphas)]
        rows = sweep_alpha(args.model_name_or_path, alphas, args.calibration_windows)
    except (RuntimeError, ValueError, OSError) as error:
        logger.error("%s", error)
        return 2
    print(f"{'alpha':>6}  {'same answers':>12}  {'EM':>6}  {'F1':>6}   (shipped default: {SMOOTH_QUANT_ALPHA})")
    for row in rows:
        alpha = row["alpha"] if isinstance(row["alpha"], str) else f"{row['alpha']:.2f}"
        print(f"{alpha:>6}  {row['same_answers']:12.1%}  {row['exact_match']:6.2f}  {row['f1']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
