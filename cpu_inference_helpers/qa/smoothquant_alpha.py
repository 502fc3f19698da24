"""Choose SmoothQuant's alpha for static int8 on calibration-side data, never on the scored set.

    python -m cpu_inference_helpers.qa.smoothquant_alpha --alphas 0.5,0.6,0.7,0.8,0.9 [--mode compile]

The int8 model is built by one of the table's static int8 paths (`prepare_for_inference(..., mode=MODE,
precision="int8", calibration=..., smooth_quant_alpha=alpha)`): `--mode ipex+jit` (IPEX's SmoothQuant, the
default where IPEX is usable) or `--mode compile` (PT2E after `smoothquant.smooth_linear_inputs`, the
default elsewhere), calibrated, as run_qa calibrates it, on the first `--calibration_windows` windows of
the packaged SQuADShifts calibration set; each alpha is then judged on the rest of that set (questions
whose windows were not used to calibrate): the share of fp32 answers it keeps, and its F1 against the
gold answers. A build that fell back is an error, not a row. The SQuAD dev set is never read.
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
from cpu_inference_helpers.techniques.capabilities import inductor_compiler_available
from cpu_inference_helpers.techniques.ipex_support import probe_ipex
from cpu_inference_helpers.techniques.pt2e_quantization import PT2E_SMOOTH_QUANT_ALPHA
from cpu_inference_helpers.techniques.quantization import SMOOTH_QUANT_ALPHA

logger = logging.getLogger(__name__)

#: The table's static int8 paths, those that honour `smooth_quant_alpha`, by mode.
STATIC_INT8_MODES, STATIC_INT8_PRECISION = ("ipex+jit", "compile"), "int8"


def default_static_int8_mode() -> str:
    """ipex+jit where IPEX is usable (the legacy stack), compile (PT2E) elsewhere."""
    return "ipex+jit" if probe_ipex().usable else "compile"


def static_int8_problem(mode: str) -> str | None:
    """Why `mode`'s static int8 cannot be built on this stack, or None."""
    if mode not in STATIC_INT8_MODES:
        return f"mode must be one of {', '.join(STATIC_INT8_MODES)} (the static int8 paths), not {mode!r}"
    if mode == "ipex+jit" and not probe_ipex().usable:
        return f"ipex+jit's static int8 needs IPEX: {probe_ipex().reason}"
    if mode == "compile" and not inductor_compiler_available():
        return "compile's static int8 (PT2E) needs Inductor's C++ compiler, which was not found"
    return None


def sweep_alpha(
    model_name: str = DEFAULT_MODEL,
    alphas: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    calibration_windows: int = DEFAULT_CALIBRATION_WINDOWS,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    mode: str | None = None,
) -> list[dict[str, Any]]:
    """For each alpha: answers kept of fp32 and F1 on the held-out calibration-side questions.

    `mode`: "ipex+jit" or "compile" (None: `default_static_int8_mode`). Each row names the path that built it
    (`ran_as`, e.g. "ipex+jit:int8"); a build that fell back to another path raises RuntimeError with its
    record, as its answers would not be SmoothQuant's at that alpha.
    """
    mode = mode or default_static_int8_mode()
    problem = static_int8_problem(mode)
    if problem:
        raise RuntimeError(f"choosing SmoothQuant's alpha: {problem}")
    if not alphas or any(not 0.0 <= alpha <= 1.0 for alpha in alphas):
        raise ValueError(f"alphas must lie in [0, 1], got {list(alphas)}")
    loaded = load_qa_model_and_tokenizer(model_name)
    # ipex+jit: eager attention, which IPEX fuses, as auto:int8 runs it at batch 1; compile: the model's own (SDPA)
    model = with_attention_implementation(loaded.model, "eager") if mode == "ipex+jit" else loaded.model
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
        quantized = prepare_for_inference(model, batches[0], mode=mode, precision=STATIC_INT8_PRECISION,
                                          calibration=batches, smooth_quant_alpha=alpha)
        if quantized.record.ran_as != f"{mode}:{STATIC_INT8_PRECISION}":
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
    mode: str | None = field(default=None, metadata={
        "help": "the static int8 path: ipex+jit (IPEX) or compile (PT2E); default ipex+jit where IPEX is usable"})


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.qa.smoothquant_alpha`."""
    parser = DataclassArgumentParser(SweepSettings, prog="python -m cpu_inference_helpers.qa.smoothquant_alpha",
                                     description=__doc__)
    (settings,) = parser.parse_dataclasses(argv)

    def sweep_and_print() -> None:
        rows = sweep_alpha(settings.model_name_or_path, settings.alphas, settings.calibration_windows,
                           mode=settings.mode)
        shipped = SMOOTH_QUANT_ALPHA if rows[1]["ran_as"].startswith("ipex+jit") else PT2E_SMOOTH_QUANT_ALPHA
        print(f"{'alpha':>6}  {'same answers':>12}  {'EM':>6}  {'F1':>6}  {'path':<14}  (shipped default: {shipped})")
        for row in rows:
            alpha = row["alpha"] if isinstance(row["alpha"], str) else f"{row['alpha']:.2f}"
            print(f"{alpha:>6}  {row['same_answers']:12.1%}  {row['exact_match']:6.2f}  {row['f1']:6.2f}  "
                  f"{row['ran_as']:<14}")

    return parser.run(sweep_and_print, log=PACKAGE_PROGRESS)


if __name__ == "__main__":
    sys.exit(main())
