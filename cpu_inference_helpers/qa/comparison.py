"""Run the SQuAD evaluation in several modes side by side, interleaved batch by batch.

Every mode is prepared first (optimisation, tracing, warm-up: timed and reported as
set-up). Then each batch runs through every mode before the next batch, in a rotating
order, so machine noise and drift hit all modes alike. Throughput counts only those
timed batches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cpu_inference_helpers import preparation
from cpu_inference_helpers.infra.timing import LatencyStats, break_even_samples, time_call
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
    "REFERENCE", "ModeOutcome", "ModeResult", "ModeSpec", "compare_modes", "parse_mode_list", "prepare_modes",
    "summarise_outcomes", "with_reference",
]


@dataclass
class ModeResult:
    """Everything measured for one mode."""

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
class _ModeRun:
    spec: ModeSpec
    model: InferenceModel
    setup_s: float  # the front door's set-up, plus warming up further batch shapes
    latencies: list[float] = field(default_factory=list)
    warmed_shapes: set[tuple[int, ...]] = field(default_factory=set)
    start_logits: list[np.ndarray] = field(default_factory=list)
    end_logits: list[np.ndarray] = field(default_factory=list)


def prepare_modes(
    model: torch.nn.Module,
    example_batch: dict[str, torch.Tensor],
    specs: Sequence[ModeSpec],
    warmup_steps: int = 2,
    allow_emulated_bf16: bool = False,
    calibration: Sequence[dict[str, torch.Tensor]] | None = None,
) -> list[_ModeRun]:
    """Prepare every mode (`preparation.prepare_modes`); set-up time (the record's) includes optimisation,
    tracing and `warmup_steps` passes."""
    prepared = preparation.prepare_modes(model, example_batch, specs, calibration=calibration,
                                         allow_emulated_bf16=allow_emulated_bf16, warmup_steps=warmup_steps)
    runs = []
    for spec, ready in zip(specs, prepared, strict=True):
        run = _ModeRun(spec, ready, ready.record.setup_seconds)
        run.warmed_shapes.add(_shape(example_batch))
        runs.append(run)
    return runs


def _shape(batch: dict[str, torch.Tensor]) -> tuple[int, ...]:
    return tuple(batch["input_ids"].shape)


def warm_up_remaining_shapes(runs: Sequence[_ModeRun], batches: Sequence[dict[str, torch.Tensor]]) -> None:
    """Run every mode once, untimed, on each batch shape it has not seen (e.g. a smaller last batch).

    Compiled modes (`torch.compile` with static shapes, traced graphs' profiling executor)
    re-specialise on a new shape; that cost belongs to set-up, not to the timed batches.
    """
    for run in runs:
        for batch in batches:
            if _shape(batch) in run.warmed_shapes:
                continue
            start = time.perf_counter()
            run.model(**batch)
            run.setup_s += time.perf_counter() - start
            run.warmed_shapes.add(_shape(batch))


def run_interleaved(runs: Sequence[_ModeRun], batches: Sequence[dict[str, torch.Tensor]]) -> None:
    """Time every batch in every mode, rotating the order of modes from batch to batch.

    Every batch shape must have been warmed up in every mode (`warm_up_remaining_shapes`).
    """
    for run in runs:
        cold = {_shape(batch) for batch in batches} - run.warmed_shapes
        if cold:
            raise RuntimeError(f"{run.spec.name}: batch shapes {sorted(cold)} were not warmed up before timing")
    for index, batch in enumerate(tqdm(batches, desc=f"evaluating {len(runs)} modes", unit="batch")):
        for offset in range(len(runs)):
            run = runs[(index + offset) % len(runs)]
            outputs, seconds = time_call(run.model, batch)
            start, end = window_logits(outputs)
            run.latencies.append(seconds)
            run.start_logits.append(start)
            run.end_logits.append(end)


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
    batches = list(features.batches(batch_size))
    runs = prepare_modes(model, batches[0], specs, warmup_steps, allow_emulated_bf16, calibration)
    warm_up_remaining_shapes(runs, batches)
    run_interleaved(runs, batches)

    outcomes = []
    for run in runs:
        start_logits, end_logits = np.concatenate(run.start_logits), np.concatenate(run.end_logits)
        predictions, nbest = answers_from_logits(examples, features, start_logits, end_logits, n_best_size,
                                                 max_answer_length)
        record = run.model.record
        outcomes.append(ModeOutcome(
            spec=run.spec, ran_as=record.ran_as, precision=record.precision,
            fallbacks=[str(step) for step in record.fallbacks], predictions=predictions, nbest=nbest,
            start_logits=start_logits, end_logits=end_logits, batch_latencies_s=list(run.latencies),
            timed_seconds=math.fsum(run.latencies), setup_s=run.setup_s,
        ))
    return summarise_outcomes(examples, len(features), outcomes)


@dataclass
class ModeOutcome:
    """What one mode produced and how long it took, however it ran (one process, or workers on a cluster).

    `timed_seconds` is the time the samples took: the sum of the batch latencies in one process; the
    workers' summed batch time divided by the number of workers on a cluster (they run in parallel).
    """

    spec: ModeSpec
    ran_as: str
    precision: str
    fallbacks: list[str]
    predictions: dict[str, str]
    nbest: dict[str, list[NBestEntry]]
    start_logits: np.ndarray
    end_logits: np.ndarray
    batch_latencies_s: list[float]
    timed_seconds: float
    setup_s: float


def summarise_outcomes(
    examples: Sequence[SquadExample], samples: int, outcomes: Sequence[ModeOutcome]
) -> tuple[list[ModeResult], dict[str, dict[str, str]], dict[str, dict[str, list[NBestEntry]]]]:
    """Score every mode and compare it with the first (the eager fp32 reference): the table's rows.

    Returns the per-mode results, the answer per question id for each mode and the n-best lists for each mode.
    """
    results, all_predictions, all_nbest = [], {}, {}
    for outcome in outcomes:
        metrics = squad_metrics(examples, outcome.predictions)
        stats = LatencyStats.from_samples(outcome.batch_latencies_s)
        results.append(
            ModeResult(
                name=outcome.spec.name,
                ran_as=outcome.ran_as,
                precision=outcome.precision,
                folder=outcome.spec.folder,
                fallbacks=list(outcome.fallbacks),
                exact_match=metrics["exact_match"],
                f1=metrics["f1"],
                samples=samples,
                samples_per_second=samples / outcome.timed_seconds,
                mean_batch_latency_s=stats.mean,
                p90_batch_latency_s=stats.p90,
                setup_s=outcome.setup_s,
                batch_latencies_s=list(outcome.batch_latencies_s),
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
