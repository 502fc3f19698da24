"""Run the SQuAD evaluation in several modes side by side, interleaved batch by batch.

Every mode is prepared first (optimisation, tracing, warm-up: timed and reported as
set-up). Then each batch runs through every mode before the next batch, in a rotating
order (`timing.round_robin`), so machine noise and drift hit all modes alike. Every batch has the
batch size the modes were prepared on (the last one padded: `infra.batching`). Throughput counts only
those timed batches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cpu_inference_helpers import preparation
from cpu_inference_helpers.infra.batching import fixed_size_batches
from cpu_inference_helpers.infra.measurement import Measurement
from cpu_inference_helpers.infra.timing import break_even_samples, round_robin
from cpu_inference_helpers.modes import ModeSpec, parse_mode_list
from cpu_inference_helpers.optimize import InferenceModel
from cpu_inference_helpers.qa.data import SquadExample, require_scorable
from cpu_inference_helpers.qa.features import QAFeatures
from cpu_inference_helpers.qa.metrics import paired_f1_change, squad_metrics
from cpu_inference_helpers.qa.postprocess import NBestEntry
from cpu_inference_helpers.qa.predict import answers_from_logits, window_logits

logger = logging.getLogger(__name__)

REFERENCE = "eager"

__all__ = [
    "REFERENCE", "ModeOutcome", "ModeResult", "ModeSpec", "PreparedMode", "TimedLogits", "compare_modes",
    "parse_mode_list", "prepare_modes", "run_interleaved", "summarise_outcomes", "with_reference",
]


@dataclass
class ModeResult:
    """One row of the comparison: a view of the mode's `Measurement`, its answers' scores and the change
    against eager fp32."""

    name: str
    ran_as: str
    precision: str  # what it ran in (bf16 falls back to fp32 where the CPU has no native bf16)
    folder: str  # its sub-folder of the output folder (`ModeSpec.folder`)
    fallbacks: list[str]
    exact_match: float
    f1: float
    samples: int
    samples_per_second: float
    mean_batch_latency_s: float
    p90_batch_latency_s: float
    setup_s: float
    speedup_vs_eager: float = 1.0
    break_even_samples: float = 0.0
    same_answers_as_eager: float = 1.0
    exact_match_change_vs_eager: float = 0.0
    f1_change_vs_eager: float = 0.0
    f1_change_95ci: float = 0.0
    max_logit_diff_vs_eager: float = 0.0
    batch_latencies_s: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if math.isinf(self.break_even_samples):
            data["break_even_samples"] = None  # JSON has no infinity: never breaks even
        if math.isinf(self.f1_change_95ci):
            data["f1_change_95ci"] = None  # a single question: no spread to estimate
        return data


@dataclass
class PreparedMode:
    """One mode ready to time: its spec, the prepared model, and its set-up time (the record's)."""

    spec: ModeSpec
    model: InferenceModel
    setup_s: float


@dataclass
class TimedLogits:
    """One mode over a set of windows: each batch's latency and the windows' logits (padding dropped)."""

    latencies: list[float]
    start_logits: np.ndarray
    end_logits: np.ndarray


def prepare_modes(
    model: torch.nn.Module,
    example_batch: dict[str, torch.Tensor],
    specs: Sequence[ModeSpec],
    warmup_steps: int = 2,
    allow_emulated_bf16: bool = False,
    calibration: Sequence[dict[str, torch.Tensor]] | None = None,
) -> list[PreparedMode]:
    """Prepare every mode (`preparation.prepare_modes`) on `example_batch`, whose shape every timed batch has
    (`fixed_size_batches`); set-up time (the record's) includes optimisation, tracing and `warmup_steps` passes."""
    prepared = preparation.prepare_modes(model, example_batch, specs, calibration=calibration,
                                         allow_emulated_bf16=allow_emulated_bf16, warmup_steps=warmup_steps)
    return [PreparedMode(spec, ready, ready.record.setup_seconds) for spec, ready in zip(specs, prepared, strict=True)]


def run_interleaved(modes: Sequence[PreparedMode], inputs: dict[str, torch.Tensor], batch_size: int,
                    progress: bool = True) -> list[TimedLogits]:
    """Time `inputs` in every mode, batch by batch, the order of modes rotating (`timing.round_robin`).

    Batches have `batch_size` windows, the last one padded (`fixed_size_batches`): the shape every mode was
    prepared on. Returns, per mode in order, its batch latencies and the real windows' logits.
    """
    batches = fixed_size_batches(inputs, batch_size)
    starts: list[list[np.ndarray]] = [[] for _ in modes]
    ends: list[list[np.ndarray]] = [[] for _ in modes]

    def keep_logits(mode: int, batch: int, outputs: Any) -> None:
        start, end = window_logits(outputs)
        real = batches[batch][1]
        starts[mode].append(start[:real])
        ends[mode].append(end[:real])

    timed = tqdm([batch for batch, _ in batches], desc=f"evaluating {len(modes)} modes", unit="batch",
                 disable=not progress)
    with torch.inference_mode():
        latencies = round_robin([mode.model for mode in modes], timed, on_output=keep_logits)
    return [TimedLogits(seconds, np.concatenate(start), np.concatenate(end))
            for seconds, start, end in zip(latencies, starts, ends, strict=True)]


def with_reference(specs: Sequence[ModeSpec]) -> list[ModeSpec]:
    """`specs` with eager fp32, the reference every mode is compared with, first (added when missing)."""
    if ModeSpec(REFERENCE) not in specs:
        logger.info("adding eager fp32 as the reference mode")
    return [ModeSpec(REFERENCE)] + [spec for spec in specs if spec != ModeSpec(REFERENCE)]


def compare_modes(
    model: torch.nn.Module,
    examples: Sequence[SquadExample],
    features: QAFeatures,
    specs: Sequence[ModeSpec],
    batch_size: int = 8,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    warmup_steps: int = 2,
    allow_emulated_bf16: bool = False,
    calibration: Sequence[dict[str, torch.Tensor]] | None = None,
) -> tuple[list[ModeResult], dict[str, dict[str, str]], dict[str, dict[str, list[NBestEntry]]]]:
    """Evaluate `examples` in every mode of `specs`; eager fp32 is added first as the reference.

    `calibration` batches (int8 modes only) must come from other data than `examples`.

    Returns:
        The per-mode results, the predicted answer per question id for each mode, and the
        n-best answers per question id for each mode (utils_qa's n-best layout).
    """
    if batch_size < 1:  # a direct call's guard; run_qa's and evaluate_modes' settings check it first
        raise ValueError("the batch size must be at least 1")
    require_scorable(examples, "the examples to compare on")
    specs = with_reference(specs)
    modes = prepare_modes(model, fixed_size_batches(features.inputs, batch_size)[0][0], specs, warmup_steps,
                          allow_emulated_bf16, calibration)
    timed = run_interleaved(modes, features.inputs, batch_size)

    outcomes = []
    for mode, run in zip(modes, timed, strict=True):
        predictions, nbest = answers_from_logits(examples, features, run.start_logits, run.end_logits, n_best_size,
                                                 max_answer_length)
        record = mode.model.record
        measurement = Measurement(mode.spec.name, record.ran_as, record.precision,
                                  [str(step) for step in record.fallbacks], mode.setup_s, list(run.latencies),
                                  samples=len(features))
        outcomes.append(ModeOutcome(mode.spec, measurement, predictions, nbest, run.start_logits, run.end_logits))
    return summarise_outcomes(examples, outcomes)


@dataclass
class ModeOutcome:
    """What one mode produced and its measurement, however it ran (one process, or workers on a cluster).

    The measurement's `wall_s` is the wall-clock time the samples took: in one process, the sum of the batch
    latencies; on a cluster, the mode's share (by busy time) of the wall-clock span from the first worker's
    first timed batch to the last worker's last, idle and between-batch time included, as `bench.throughput`
    measures.
    """

    spec: ModeSpec
    measurement: Measurement
    predictions: dict[str, str]
    nbest: dict[str, list[NBestEntry]]
    start_logits: np.ndarray
    end_logits: np.ndarray


def summarise_outcomes(
    examples: Sequence[SquadExample], outcomes: Sequence[ModeOutcome]
) -> tuple[list[ModeResult], dict[str, dict[str, str]], dict[str, dict[str, list[NBestEntry]]]]:
    """Score every mode and compare it with the first (the eager fp32 reference): the table's rows.

    Returns the per-mode results, the answer per question id for each mode and the n-best lists for each mode.
    """
    results, all_predictions, all_nbest = [], {}, {}
    for outcome in outcomes:
        metrics = squad_metrics(examples, outcome.predictions)
        measured = outcome.measurement
        stats = measured.latency
        results.append(
            ModeResult(
                name=outcome.spec.name,
                ran_as=measured.ran_as,
                precision=measured.precision,
                folder=outcome.spec.folder,
                fallbacks=list(measured.fallbacks),
                exact_match=metrics["exact_match"],
                f1=metrics["f1"],
                samples=measured.samples,
                samples_per_second=measured.samples_per_second,
                mean_batch_latency_s=stats.mean,
                p90_batch_latency_s=stats.p90,
                setup_s=measured.setup_s,
                batch_latencies_s=list(measured.call_latencies_s),
            )
        )
        all_predictions[outcome.spec.name] = outcome.predictions
        all_nbest[outcome.spec.name] = outcome.nbest

    reference_outcome, reference = outcomes[0], results[0]
    reference_per_sample = 1 / reference.samples_per_second
    for outcome, result in zip(outcomes, results, strict=True):
        result.speedup_vs_eager = result.samples_per_second / reference.samples_per_second
        result.break_even_samples = break_even_samples(
            result.setup_s, 1 / result.samples_per_second, reference.setup_s, reference_per_sample
        )
        same = [all_predictions[result.name][e.id] == all_predictions[REFERENCE][e.id] for e in examples]
        result.same_answers_as_eager = sum(same) / len(same)
        result.exact_match_change_vs_eager = result.exact_match - reference.exact_match
        result.f1_change_vs_eager, result.f1_change_95ci = paired_f1_change(
            examples, all_predictions[result.name], all_predictions[REFERENCE]
        )
        result.max_logit_diff_vs_eager = float(
            max(
                np.abs(outcome.start_logits - reference_outcome.start_logits).max(),
                np.abs(outcome.end_logits - reference_outcome.end_logits).max(),
            )
        )
    return results, all_predictions, all_nbest
