"""The run_qa comparison as a library call: load, evaluate every mode side by side, write the outputs.

`evaluate_modes(settings)` is what `python -m cpu_inference_helpers.run_qa` runs and what the
notebooks call. It checks everything that can be checked (output folder, data, model, window
sizes) before the evaluation starts, and writes its files all at once or not at all.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cpu_inference_helpers.infra.batching import fixed_size_batches
from cpu_inference_helpers.infra.errors import failed_checks
from cpu_inference_helpers.infra.output_files import OutputWriteError, StagedFiles, prepare_output_dir, staged_outputs
from cpu_inference_helpers.models import DEFAULT_MODEL, REFERENCE_CHECKPOINT, load_qa_model_and_tokenizer
from cpu_inference_helpers.modes import ModeSpec, parse_mode_list
from cpu_inference_helpers.qa.calibration import (
    DEFAULT_CALIBRATION_WINDOWS,
    calibration_batches,
    load_calibration_examples,
    require_disjoint,
)
from cpu_inference_helpers.qa.comparison import ModeResult, compare_modes, summarise_outcomes, with_reference
from cpu_inference_helpers.qa.data import load_examples, require_scorable
from cpu_inference_helpers.qa.features import prepare_validation_features
from cpu_inference_helpers.qa.postprocess import NBestEntry
from cpu_inference_helpers.qa.report import plot_results, write_csv, write_json
from cpu_inference_helpers.techniques.capabilities import detect_capabilities
from cpu_inference_helpers.techniques.dtypes import INT8
from cpu_inference_helpers.techniques.ipex_support import probe_ipex

if TYPE_CHECKING:
    from cpu_inference_helpers.qa.ray_engine import RayEngine

logger = logging.getLogger(__name__)

#: What `make qa` compares where IPEX works (the legacy stack): the guide's techniques.
LEGACY_DEFAULT_MODES = "eager,jit,ipex+jit,eager:bf16,ipex+jit:bf16,auto:int8"
#: What it compares without IPEX (the modern stack): what a reader there chooses between.
MODERN_DEFAULT_MODES = "eager,jit,compile,export,eager:bf16,compile:bf16,export:bf16,auto:int8"


def default_modes() -> str:
    """The modes compared when none are named: the guide's IPEX modes where IPEX is usable, else the modern paths.

    (Without IPEX the IPEX modes would only fall back to jit; the modern stack's own paths are torch.compile and
    torch.export + AOTInductor.)
    """
    return LEGACY_DEFAULT_MODES if probe_ipex().usable else MODERN_DEFAULT_MODES

#: The guide's own run, with its real checkpoint (needs the Hub).
REAL_CHECKPOINT_COMMAND = (
    f"python -m cpu_inference_helpers.run_qa --model_name_or_path {REFERENCE_CHECKPOINT} --dataset_name squad "
    "--do_eval --max_seq_length 384 --doc_stride 128 --no_cuda --jit_mode_eval --use_ipex --output_dir /tmp/qa"
)


@dataclass
class EvaluationSettings:
    """What to evaluate and how; the names follow run_qa.py's flags."""

    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={"help": (
        "Hub id, local folder, the shipped fine-tuned checkpoint minilm-squad, or an offline random model "
        "(random-bert-base, random-bert-tiny) (default: %(default)s)")})
    dataset_name: str | None = field(default=None, metadata={
        "help": "a datasets name such as 'squad' (needs the Hub or its cache)"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "the datasets configuration name"})
    validation_file: str | None = field(default=None, metadata={
        "help": "a SQuAD-format JSON / JSON lines file (.gz/.xz allowed)"})
    max_seq_length: int = field(default=384, metadata={
        "help": "tokens per window of question + context (default: %(default)s)"})
    doc_stride: int = field(default=128, metadata={
        "help": "tokens shared by consecutive windows of a long context (default: %(default)s)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "evaluate only the first N questions"})
    n_best_size: int = field(default=20, metadata={
        "help": "start and end candidates per window for the answer search (default: %(default)s)"})
    max_answer_length: int = field(default=30, metadata={
        "help": "longest answer in tokens (default: %(default)s)"})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "windows per batch (default: %(default)s)"})
    modes: list[ModeSpec] = field(default_factory=lambda: parse_mode_list(default_modes()))
    attn_implementation: str = field(default="sdpa", metadata={
        "choices": ["sdpa", "eager"], "help": "attention kernel: sdpa (PyTorch fused attention) or eager"})
    warmup_steps: int = field(default=2, metadata={"help": "untimed passes per mode before timing"})
    allow_emulated_bf16: bool = field(default=False, metadata={
        "help": "run bf16 even on CPUs without native bf16 instructions"})
    seed: int = field(default=0, metadata={"help": "weight seed of the offline random models"})
    calibration_file: str | None = field(default=None, metadata={"help": (  # None: the packaged SQuADShifts set
        "SQuAD-format text to calibrate static int8 on; it must share no question or context with the "
        "evaluated ones (default: the packaged 256 SQuADShifts new_wiki questions)")})
    calibration_windows: int = field(default=DEFAULT_CALIBRATION_WINDOWS, metadata={
        "help": "windows to calibrate on (default: %(default)s)"})

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every setting out of range, in run_qa's flag names: the one place these inputs are checked."""
        checks = [
            (self.max_seq_length < 16, "--max_seq_length must be at least 16"),
            (self.doc_stride < 0 or self.doc_stride >= self.max_seq_length,
             f"--doc_stride must be at least 0 and smaller than --max_seq_length (got {self.doc_stride} and "
             f"{self.max_seq_length})"),
            (self.per_device_eval_batch_size < 1, "--per_device_eval_batch_size must be at least 1"),
            (self.max_eval_samples is not None and self.max_eval_samples < 1, "--max_eval_samples must be at least 1"),
            (self.n_best_size < 1 or self.max_answer_length < 1, "--n_best_size and --max_answer_length must be >= 1"),
            (self.warmup_steps < 0, "--warmup_steps must be at least 0"),
            (self.calibration_windows < 1, "--calibration_windows must be at least 1"),
            (not self.modes, "--modes names no mode"),
        ]
        return failed_checks(checks)


@dataclass
class Evaluation:
    """The outcome: per-mode results, answers and n-best lists, and the run's metadata."""

    results: list[ModeResult]
    predictions: dict[str, dict[str, str]]
    nbest: dict[str, dict[str, list[NBestEntry]]]
    metadata: dict[str, Any]
    title: str
    random_weights: bool

    def by_mode(self) -> dict[str, ModeResult]:
        """The results keyed by mode name."""
        return {result.name: result for result in self.results}


def write_run_qa_files(stage: StagedFiles, result: ModeResult, predictions: dict, nbest: dict) -> None:
    """The files transformers' run_qa.py writes with --output_dir, with its names and layout, for one mode.

    eval_predictions.json (id -> answer) and eval_nbest_predictions.json (id -> n-best list) as
    utils_qa.postprocess_qa_predictions writes them (indent 4), and eval_results.json as the
    Trainer's save_metrics("eval", ...) does (sorted keys, indent 4).
    """
    folder = result.folder
    stage.path(f"{folder}/eval_predictions.json").write_text(json.dumps(predictions, indent=4) + "\n")
    stage.path(f"{folder}/eval_nbest_predictions.json").write_text(json.dumps(nbest, indent=4) + "\n")
    # the wall-clock time results.json counts: the summed batches in one process; on Ray the mode's share of
    # the timed span (the workers' summed batch time counts overlapping batches twice and idle workers not at all)
    runtime = result.samples / result.samples_per_second
    metrics = {
        "eval_exact_match": result.exact_match,
        "eval_f1": result.f1,
        "eval_samples": result.samples,
        "eval_runtime": round(runtime, 4),
        "eval_samples_per_second": round(result.samples / runtime, 3),
        "eval_steps_per_second": round(len(result.batch_latencies_s) / runtime, 3),
    }
    stage.path(f"{folder}/eval_results.json").write_text(json.dumps(metrics, indent=4, sort_keys=True) + "\n")


def write_outputs(evaluation: Evaluation, output_dir: Path) -> None:
    """results.json/.csv, predictions.json, comparison.png and run_qa.py's files per mode: all new or all old."""
    with staged_outputs(output_dir) as stage:
        write_json(stage.path("results.json"), evaluation.results, evaluation.metadata)
        write_csv(stage.path("results.csv"), evaluation.results)
        stage.path("predictions.json").write_text(
            json.dumps(evaluation.predictions, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        plot_results(stage.path("comparison.png"), evaluation.results, evaluation.title)
        for result in evaluation.results:
            write_run_qa_files(stage, result, evaluation.predictions[result.name], evaluation.nbest[result.name])


def _cluster_for(engine: RayEngine | None) -> contextlib.AbstractContextManager[Any]:
    if engine is None:
        return contextlib.nullcontext()
    from cpu_inference_helpers.infra.ray_cluster import ray_cluster

    return ray_cluster(engine.address, engine.object_store_mb)


def _where(engine: RayEngine | None, threads: int) -> str:
    if engine is None:
        return f"{threads} threads"
    return f"Ray: {engine.workers} workers x {engine.threads_per_worker} threads"


def _compare_on_ray(engine: RayEngine, settings: EvaluationSettings, examples: list, features: Any,
                    calibration: list | None, engine_metadata: dict[str, Any]) -> tuple[list, dict, dict]:
    from cpu_inference_helpers.qa.ray_engine import run_on_ray

    # the shape of every batch the workers time (`fixed_size_batches`), even with fewer windows than one batch
    example_batch = fixed_size_batches(features.inputs, settings.per_device_eval_batch_size)[0][0]
    run = run_on_ray(
        engine, examples, with_reference(settings.modes), model_name_or_path=settings.model_name_or_path,
        attn_implementation=settings.attn_implementation, seed=settings.seed,
        max_seq_length=features.max_seq_length, doc_stride=settings.doc_stride,
        batch_size=settings.per_device_eval_batch_size, n_best_size=settings.n_best_size,
        max_answer_length=settings.max_answer_length, warmup_steps=settings.warmup_steps,
        allow_emulated_bf16=settings.allow_emulated_bf16, example_batch=example_batch, calibration=calibration,
    )
    if run.metadata["windows"] != len(features):
        raise RuntimeError(f"the Ray workers cut {run.metadata['windows']} windows, this process {len(features)}: "
                           "their tokenizers differ")
    engine_metadata.update(run.metadata)
    return summarise_outcomes(examples, run.outcomes)


def evaluate_modes(settings: EvaluationSettings, output_dir: str | Path | None = None,
                   engine: RayEngine | None = None) -> Evaluation:
    """Evaluate every mode of `settings` side by side (eager fp32 added as the reference).

    In this process by default; with `engine`, as batch inference on a Ray cluster (`qa.ray_engine`),
    which gives the same answers and writes the same files.

    Raises (before any evaluation) `OutputDirError`, `SquadFormatError`, `FileNotFoundError`,
    `OSError`, `ValueError` or (Ray) `ClusterError` with a message that says what to change. With
    `output_dir`, writes the outputs there (see `write_outputs`); a run that fails writes nothing.
    """
    problems = settings.problems()  # checked when the settings were made; again, as fields may have changed since
    if problems:
        raise ValueError("; ".join(problems))
    folder = prepare_output_dir(output_dir) if output_dir is not None else None
    examples, source = load_examples(settings.dataset_name, settings.validation_file, settings.dataset_config_name)
    if settings.max_eval_samples:
        examples = examples[: settings.max_eval_samples]
    require_scorable(examples, source)
    calibration_examples = None
    if any(spec.precision == INT8 for spec in settings.modes):
        calibration_examples = load_calibration_examples(settings.calibration_file)
        require_disjoint(calibration_examples, examples)
    with _cluster_for(engine) as cluster:
        engine_metadata: dict[str, Any] = {"engine": "one process"}
        if engine is not None:
            from cpu_inference_helpers.qa.ray_engine import check_engine

            worker = check_engine(engine, cluster, settings.model_name_or_path, settings.attn_implementation,
                                  settings.seed)
            engine_metadata = {"engine": "ray", "cluster_cpus": cluster.cpus, "cluster_nodes": cluster.nodes,
                               "worker_stack": worker["stack"]}
        loaded = load_qa_model_and_tokenizer(settings.model_name_or_path, settings.attn_implementation, settings.seed)
        features = prepare_validation_features(
            examples, loaded.tokenizer, settings.max_seq_length, settings.doc_stride,
            model_max_positions=getattr(loaded.model.config, "max_position_embeddings", None),
        )
        calibration = None
        if calibration_examples is not None:
            calibration = calibration_batches(
                calibration_examples, loaded.tokenizer, features.max_seq_length, settings.doc_stride,
                settings.calibration_windows, settings.per_device_eval_batch_size,
                model_max_positions=getattr(loaded.model.config, "max_position_embeddings", None),
            )
        capabilities = detect_capabilities(include_ipex=True)
        threads = torch.get_num_threads() if engine is None else engine.threads_per_worker
        logger.info(
            "evaluating %d questions (%d windows) from %s with %s, batch %d, %s, modes: %s",
            len(examples), len(features), source, loaded.name, settings.per_device_eval_batch_size,
            _where(engine, threads), ", ".join(spec.name for spec in settings.modes),
        )
        if engine is None:
            results, predictions, nbest = compare_modes(
                loaded.model, examples, features, settings.modes,
                batch_size=settings.per_device_eval_batch_size, n_best_size=settings.n_best_size,
                max_answer_length=settings.max_answer_length, warmup_steps=settings.warmup_steps,
                allow_emulated_bf16=settings.allow_emulated_bf16, calibration=calibration,
            )
        else:
            results, predictions, nbest = _compare_on_ray(engine, settings, examples, features, calibration,
                                                          engine_metadata)
    arguments = asdict(settings)
    arguments["modes"] = [spec.name for spec in settings.modes]
    metadata = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": loaded.name,
        "random_weights": loaded.random_weights,
        "data": source,
        "questions": len(examples),
        "samples": len(features),
        "batch_size": settings.per_device_eval_batch_size,
        "max_seq_length": features.max_seq_length,
        "max_seq_length_requested": settings.max_seq_length,
        "doc_stride": settings.doc_stride,
        "truncated_questions": features.truncated_questions,
        "attn_implementation": settings.attn_implementation,
        "threads": threads,
        **engine_metadata,
        "arguments": arguments,
        "machine": capabilities.as_dict(),
    }
    title = (
        f"{loaded.name} on {len(examples)} questions ({len(features)} samples, seq {features.max_seq_length}, "
        f"batch {settings.per_device_eval_batch_size}), {capabilities.model_name}, {_where(engine, threads)}"
    )
    evaluation = Evaluation(results, predictions, nbest, metadata, title, loaded.random_weights)
    if folder is not None:
        try:
            write_outputs(evaluation, folder)
        except OSError as error:
            raise OutputWriteError(
                f"could not write the results to {folder} ({error}); earlier results there are unchanged"
            ) from error
    return evaluation
