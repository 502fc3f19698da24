"""Choose SmoothQuant's alpha for IPEX static int8 on calibration-side data, never on the scored set.

    python -m cpu_inference_helpers.qa.smoothquant_alpha --alphas 0.5,0.6,0.7,0.8,0.9

The int8 model is built by the table's static int8 path (`prepare_for_inference(..., mode="ipex+jit",
precision="int8", calibration=..., smooth_quant_alpha=alpha)`), calibrated, as run_qa calibrates it,
on the first `--calibration_windows` windows of the packaged SQuADShifts calibration set; each alpha
is then judged on the rest of that set (questions whose windows were not used to calibrate): the share
of fp32 answers it keeps, and its F1 against the gold answers. A build that fell back is an error, not
a row. The SQuAD dev set is never read. Needs IPEX (the legacy stack).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cpu_inference_helpers.infra.cli import DataclassArgumentParser
from cpu_inference_helpers.infra.cli_logging import PACKAGE_PROGRESS
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.models import DEFAULT_MODEL, load_qa_model_and_tokenizer
from cpu_inference_helpers.optimize import prepare_for_inference
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
from cpu_inference_helpers.techniques.quantization import SMOOTH_QUANT_ALPHA

logger = logging.getLogger(__name__)

#: The table's static int8 path, the one that honours `smooth_quant_alpha`.
STATIC_INT8_MODE, STATIC_INT8_PRECISION = "ipex+jit", "int8"


def sweep_alpha(
    model_name: str = DEFAULT_MODEL,
    alphas: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    calibration_windows: int = DEFAULT_CALIBRATION_WINDOWS,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> list[dict[str, Any]]:
    """For each alpha: answers kept of fp32 and F1 on the held-out calibration-side questions.

    Each row names the path that built it (`ran_as`, "ipex+jit:int8"); a build that fell back to another path
    raises RuntimeError with its record, as its answers would not be SmoothQuant's at that alpha.
    """
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
    rows = [{"alpha": "fp32", "ran_as": "eager", "same_answers": 1.0, **squad_metrics(held_out, reference)}]
    for alpha in tqdm(alphas, desc="alphas"):
        quantized = prepare_for_inference(model, batches[0], mode=STATIC_INT8_MODE, precision=STATIC_INT8_PRECISION,
                                          calibration=batches, smooth_quant_alpha=alpha)
        if quantized.record.ran_as != f"{STATIC_INT8_MODE}:{STATIC_INT8_PRECISION}":
            raise RuntimeError(f"alpha {alpha}: static int8 was not built ({quantized.record.summary()})")
        answers = predict(quantized, held_features, held_out, batch_size=16).answers
        same = float(np.mean([answers[key] == reference[key] for key in reference]))
        rows.append({"alpha": alpha, "ran_as": quantized.record.ran_as, "same_answers": same,
                     **squad_metrics(held_out, answers)})
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


def _alphas(text: str) -> list[float]:
    try:
        return [float(part) for part in comma_list(text)]
    except ValueError:
        raise ValueError(f"alphas are numbers in [0, 1], e.g. 0.5,0.6, not {text!r}") from None


@dataclass(frozen=True)
class SweepSettings:
    """What the sweep measures: the model, the alphas, and how many calibration windows calibrate."""

    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={"help": "the model (default: %(default)s)"})
    alphas: tuple[float, ...] = field(default=(0.5, 0.6, 0.7, 0.8, 0.9), metadata={
        "parse": _alphas, "default_text": "0.5,0.6,0.7,0.8,0.9", "help": "comma-separated (default: 0.5,...,0.9)"})
    calibration_windows: int = field(default=DEFAULT_CALIBRATION_WINDOWS, metadata={
        "help": "windows to calibrate on; the rest of the calibration set judges (default: %(default)s)"})


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.qa.smoothquant_alpha`."""
    parser = DataclassArgumentParser(SweepSettings, prog="python -m cpu_inference_helpers.qa.smoothquant_alpha",
                                     description=__doc__)
    (settings,) = parser.parse_dataclasses(argv)

    def sweep_and_print() -> None:
        rows = sweep_alpha(settings.model_name_or_path, settings.alphas, settings.calibration_windows)
        print(f"{'alpha':>6}  {'same answers':>12}  {'EM':>6}  {'F1':>6}  {'path':<14}  "
              f"(shipped default: {SMOOTH_QUANT_ALPHA})")
        for row in rows:
            alpha = row["alpha"] if isinstance(row["alpha"], str) else f"{row['alpha']:.2f}"
            print(f"{alpha:>6}  {row['same_answers']:12.1%}  {row['exact_match']:6.2f}  {row['f1']:6.2f}  "
                  f"{row['ran_as']:<14}")

    return parser.run(sweep_and_print, log=PACKAGE_PROGRESS)


if __name__ == "__main__":
    sys.exit(main())
