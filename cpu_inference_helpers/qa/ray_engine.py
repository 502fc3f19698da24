"""The run_qa comparison as batch inference on a Ray cluster (Ray Data's recipe).

SQuAD questions become a Ray Dataset, one row per question. `Dataset.map_batches` hands batches of
whole questions to a pool of actors (`ActorPoolStrategy(size=workers)`, `num_cpus=threads_per_worker`:
Ray sets each actor's OMP_NUM_THREADS from it). Each actor is a `QAPredictor`: its constructor loads the
model and prepares every mode once (the set-up, reported per actor); each call tokenizes its questions
into windows, runs them through every mode with the single process's engine (`comparison.run_interleaved`:
batches of `per_device_eval_batch_size`, the last one padded, the modes interleaved batch by batch), and
post-processes each question from all of its windows, which the batch holds because it was cut at question
boundaries. The driver gathers the rows, scores them and writes exactly the files the single-process run
writes. Throughput is measured on the wall clock: all windows over the span from the first worker's first
timed batch to the last worker's last (shared among the modes by their busy time), so an idle worker
counts, as it does in `bench.throughput`'s table.

Worker processes that die are restarted by Ray and their batch retried, up to `max_restarts` times
(Ray Data's own default is forever, which turns a run that cannot complete into one that never ends).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cpu_inference_helpers.infra.errors import error_summary, refuse_failed_checks
from cpu_inference_helpers.infra.log_levels import logger_level
from cpu_inference_helpers.infra.measurement import Measurement
from cpu_inference_helpers.infra.ray_cluster import (
    INSTALL_HINT,
    ClusterError,
    ClusterInfo,
    require_capacity,
    require_ray,
    stack_facts,
)
from cpu_inference_helpers.models import load_qa_model_and_tokenizer
from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.qa.comparison import ModeOutcome, prepare_modes, run_interleaved
from cpu_inference_helpers.qa.data import SquadExample
from cpu_inference_helpers.qa.features import prepare_validation_features
from cpu_inference_helpers.qa.predict import answers_from_logits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide to run: `address` None starts a local cluster sized to this machine."""

    address: str | None = None
    workers: int = 1
    threads_per_worker: int = 1
    questions_per_task: int = 16  # rows of one map_batches call: whole questions, never split
    max_restarts: int = 3  # per actor; then the run fails (and writes nothing)
    object_store_mb: int = 256  # the local cluster's bound
    predictor: type[QAPredictor] | None = None  # None: QAPredictor; a subclass changes what the workers do

    def __post_init__(self) -> None:
        refuse_failed_checks([
            (self.workers < 1, "--workers must be at least 1"),
            (self.threads_per_worker < 1, "--threads_per_worker must be at least 1"),
            (self.questions_per_task < 1, "--questions_per_task must be at least 1"),
            (self.max_restarts < 0, "max_restarts must be at least 0"),
            (self.object_store_mb < 80, "the object store needs at least 80 MB (Ray's minimum is 75 MiB)"),
        ])


def _to_numpy(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in batch.items()}


def _to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in batch.items()}


def _object_column(values: Sequence[Any]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    column[:] = list(values)
    return column


class QAPredictor:
    """A Ray Data actor: loads the model and prepares every mode once, then answers batches of questions.

    Subclass it to change what a worker does (the tests make one that dies on its first batch).
    """

    def __init__(self, model_name_or_path: str, attn_implementation: str, seed: int, modes: Sequence[str],
                 max_seq_length: int, doc_stride: int, batch_size: int, n_best_size: int, max_answer_length: int,
                 warmup_steps: int, allow_emulated_bf16: bool, example_batch: dict[str, np.ndarray],
                 calibration: list[dict[str, np.ndarray]] | None, threads: int) -> None:
        torch.set_num_threads(threads)
        started = time.perf_counter()
        loaded = load_qa_model_and_tokenizer(model_name_or_path, attn_implementation, seed)
        load_s = time.perf_counter() - started
        self.tokenizer, self.batch_size = loaded.tokenizer, batch_size
        self.max_seq_length, self.doc_stride = max_seq_length, doc_stride
        self.model_max_positions = getattr(loaded.model.config, "max_position_embeddings", None)
        self.n_best_size, self.max_answer_length = n_best_size, max_answer_length
        specs = [ModeSpec.parse(mode) for mode in modes]
        self.runs = prepare_modes(loaded.model, _to_torch(example_batch), specs, warmup_steps, allow_emulated_bf16,
                                  [_to_torch(batch) for batch in calibration] if calibration else None)
        self.actor = {
            "actor": uuid.uuid4().hex[:8], "host": socket.gethostname(), "pid": os.getpid(),
            "threads": torch.get_num_threads(), "load_s": load_s,
            "setup_s": {run.spec.name: run.setup_s for run in self.runs},
            "records": {run.spec.name: {"ran_as": run.model.record.ran_as, "precision": run.model.record.precision,
                                        "fallbacks": [str(step) for step in run.model.record.fallbacks]}
                        for run in self.runs},
        }
        logger.info("actor %s on %s: model loaded in %.1f s, modes prepared in %s", self.actor["actor"],
                    self.actor["host"], load_s, ", ".join(f"{k} {v:.1f} s" for k, v in self.actor["setup_s"].items()))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        examples = [SquadExample(str(id_), str(question), str(context), json.loads(str(answers)), str(title))
                    for id_, question, context, answers, title in zip(batch["id"], batch["question"],
                                                                      batch["context"], batch["answers"],
                                                                      batch["title"], strict=True)]
        features = prepare_validation_features(examples, self.tokenizer, self.max_seq_length, self.doc_stride,
                                               self.model_max_positions)
        started = time.time()  # the wall clock: comparable across workers (across hosts, with NTP-synced clocks)
        timed = run_interleaved(self.runs, features.inputs, self.batch_size, progress=False)
        ended = time.time()
        windows_of = {example.id: [] for example in examples}
        for window, example_id in enumerate(features.example_ids):
            windows_of[example_id].append(window)
        columns: dict[str, np.ndarray] = {"index": batch["index"], "id": batch["id"]}
        for number, run in enumerate(timed):
            answers, nbest = answers_from_logits(examples, features, run.start_logits, run.end_logits,
                                                 self.n_best_size, self.max_answer_length)
            columns[f"answer_{number}"] = np.array([answers[e.id] for e in examples], dtype=object)
            columns[f"nbest_{number}"] = np.array([json.dumps(nbest[e.id]) for e in examples], dtype=object)
            columns[f"start_{number}"] = _object_column([run.start_logits[windows_of[e.id]] for e in examples])
            columns[f"end_{number}"] = _object_column([run.end_logits[windows_of[e.id]] for e in examples])
        latencies = {mode.spec.name: run.latencies for mode, run in zip(self.runs, timed, strict=True)}
        call = json.dumps({"call": uuid.uuid4().hex, "windows": len(features), "latencies": latencies,
                           "started": started, "ended": ended, "actor": self.actor})
        columns["call"] = np.array([call] * len(examples), dtype=object)
        return columns


@dataclass
class RayRun:
    """What the Ray run measured besides the per-mode outcomes: its cluster, actors and wall time."""

    outcomes: list[ModeOutcome]
    metadata: dict[str, Any]


def _rows(examples: Sequence[SquadExample]) -> list[dict[str, Any]]:
    return [{"index": index, "id": e.id, "question": e.question, "context": e.context,
             "answers": json.dumps(e.answers), "title": e.title} for index, e in enumerate(examples)]


def _probe(model_name_or_path: str, attn_implementation: str, seed: int) -> dict[str, Any]:
    """Runs on a worker: its software versions, and whether it can load the model."""
    facts: dict[str, Any] = {"stack": stack_facts(), "host": socket.gethostname()}
    start = time.perf_counter()
    try:
        load_qa_model_and_tokenizer(model_name_or_path, attn_implementation, seed)
    except Exception as error:  # noqa: BLE001 - reported to the driver as the reason
        facts["load_error"] = error_summary(error)
    facts["load_s"] = time.perf_counter() - start
    return facts


def require_workers_match(threads_per_worker: int, model_name_or_path: str, attn_implementation: str = "sdpa",
                          seed: int = 0) -> dict[str, Any]:
    """Run one worker-sized task that loads the model; fail unless it can and its software equals ours.

    A worker with another torch, transformers, IPEX or torchao (or none) would build other models than this
    process, or fall back where this one does not: its answers would not be the ones compared here.
    """
    ray = require_ray()
    probe = ray.remote(num_cpus=threads_per_worker, max_retries=0)(_probe)
    try:
        facts = ray.get(probe.remote(model_name_or_path, attn_implementation, seed))
    except ray.exceptions.RayError as error:
        hint = (f"install the same environment on every node: {INSTALL_HINT}"
                if "ModuleNotFoundError" in str(error) or "ImportError" in str(error)
                else "see the Ray worker logs (/tmp/ray/session_latest/logs)")
        raise ClusterError(f"a Ray worker failed before the work ({error_summary(error)}); {hint}") from error
    ours = stack_facts()
    theirs = facts["stack"]
    different = {name: (ours[name], theirs.get(name)) for name in ours if theirs.get(name) != ours[name]}
    if different:
        described = "; ".join(f"{name}: here {here or 'not installed'}, worker {there or 'not installed'}"
                              for name, (here, there) in different.items())
        raise ClusterError(
            f"the Ray workers (on {facts['host']}) run other software than this process ({described}): they would "
            "build the modes differently. Install the same versions on every node (same venv or requirements)"
        )
    if "load_error" in facts:
        raise ClusterError(f"a Ray worker (on {facts['host']}) could not load {model_name_or_path}: "
                           f"{facts['load_error']}. Every node needs the model (a Hub id with access, the shipped "
                           "checkpoint, or a folder at the same path on every node)")
    return facts


def check_engine(engine: RayEngine, cluster: ClusterInfo, model_name_or_path: str, attn_implementation: str,
                 seed: int) -> dict[str, Any]:
    """Before any heavy work: enough CPUs for the workers, and workers that can load the model with our stack."""
    require_capacity(cluster, engine.workers, engine.threads_per_worker)
    return require_workers_match(engine.threads_per_worker, model_name_or_path, attn_implementation, seed)


def run_on_ray(
    engine: RayEngine,
    examples: Sequence[SquadExample],
    specs: Sequence[ModeSpec],
    *,
    model_name_or_path: str,
    attn_implementation: str,
    seed: int,
    max_seq_length: int,
    doc_stride: int,
    batch_size: int,
    n_best_size: int,
    max_answer_length: int,
    warmup_steps: int,
    allow_emulated_bf16: bool,
    example_batch: dict[str, torch.Tensor],
    calibration: Sequence[dict[str, torch.Tensor]] | None = None,
) -> RayRun:
    """Answer `examples` in every mode of `specs` (the first is the reference) on the connected Ray cluster.

    `max_seq_length` must be the window length the driver's features use (after any clamp), so that
    the workers' windows are the driver's. Raises `ClusterError` when the run cannot complete.
    """
    ray = require_ray()
    constructor = {
        "model_name_or_path": model_name_or_path, "attn_implementation": attn_implementation, "seed": seed,
        "modes": [spec.name for spec in specs], "max_seq_length": max_seq_length, "doc_stride": doc_stride,
        "batch_size": batch_size, "n_best_size": n_best_size, "max_answer_length": max_answer_length,
        "warmup_steps": warmup_steps, "allow_emulated_bf16": allow_emulated_bf16,
        "example_batch": _to_numpy(example_batch),
        "calibration": [_to_numpy(batch) for batch in calibration] if calibration else None,
        "threads": engine.threads_per_worker,
    }
    # one block per task, and at least one task per worker when there are enough questions
    per_task = max(1, min(engine.questions_per_task, math.ceil(len(examples) / engine.workers)))
    dataset = ray.data.from_items(_rows(examples), override_num_blocks=math.ceil(len(examples) / per_task))
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing actor options as keyword arguments but offers no other way to bound
        # restarts (the default, -1, retries a dying worker forever)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        answered = dataset.map_batches(
            engine.predictor or QAPredictor, fn_constructor_kwargs=constructor,
            compute=ray.data.ActorPoolStrategy(size=engine.workers), num_cpus=engine.threads_per_worker,
            batch_size=per_task, batch_format="numpy",
            max_restarts=engine.max_restarts, max_task_retries=engine.max_restarts,
        )
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    try:  # Ray Data logs every dataset's start and end at INFO, and its disabled progress bars at WARNING
        progress = tqdm(total=len(examples), desc=f"Ray: {engine.workers} workers", unit="question")
        with logger_level("ray.data", logging.ERROR), progress:
            for batch in answered.iter_batches(batch_size=None, batch_format="numpy"):
                keys = list(batch)
                rows.extend({key: batch[key][i] for key in keys} for i in range(len(batch["index"])))
                progress.update(len(batch["index"]))
    except ray.exceptions.RayError as error:
        raise ClusterError(f"the Ray run could not complete ({error_summary(error)})") from error
    wall_s = time.perf_counter() - started
    if len(rows) != len(examples):
        raise ClusterError(f"the Ray run returned {len(rows)} answers for {len(examples)} questions")
    rows.sort(key=lambda row: int(row["index"]))
    return _gather(engine, specs, examples, rows, wall_s)


def _gather(engine: RayEngine, specs: Sequence[ModeSpec], examples: Sequence[SquadExample],
            rows: list[dict[str, Any]], wall_s: float) -> RayRun:
    calls = {}
    for row in rows:
        call = json.loads(str(row["call"]))
        calls[call["call"]] = call
    actors = {call["actor"]["actor"]: call["actor"] for call in calls.values()}
    windows = sum(call["windows"] for call in calls.values())
    # wall clock from the first worker's first timed batch to the last worker's last: idle workers, and the
    # tokenizing and post-processing between a worker's batches, count, as in `bench.throughput`
    span_s = max(call["ended"] for call in calls.values()) - min(call["started"] for call in calls.values())
    busy = {spec.name: math.fsum(s for call in calls.values() for s in call["latencies"][spec.name]) for spec in specs}
    all_busy = math.fsum(busy.values())
    first_actor = next(iter(actors.values()))
    outcomes = []
    for number, spec in enumerate(specs):
        latencies = [seconds for call in calls.values() for seconds in call["latencies"][spec.name]]
        record = first_actor["records"][spec.name]
        different = {a["actor"] for a in actors.values() if a["records"][spec.name] != record}
        if different:
            logger.warning("%s was built differently on actors %s: %s", spec.name, sorted(different),
                           [actors[a]["records"][spec.name] for a in sorted(different)])
        measurement = Measurement(spec.name, record["ran_as"], record["precision"], record["fallbacks"],
                                  max(actor["setup_s"][spec.name] for actor in actors.values()), latencies,
                                  samples=windows, wall_s=span_s * busy[spec.name] / all_busy)
        outcomes.append(ModeOutcome(
            spec, measurement,
            predictions={str(row["id"]): str(row[f"answer_{number}"]) for row in rows},
            nbest={str(row["id"]): json.loads(str(row[f"nbest_{number}"])) for row in rows},
            start_logits=np.concatenate([np.asarray(row[f"start_{number}"]) for row in rows]),
            end_logits=np.concatenate([np.asarray(row[f"end_{number}"]) for row in rows]),
        ))
    for actor in actors.values():
        logger.info("actor %s (%s, pid %d, %d threads): load %.1f s, set-up %s", actor["actor"], actor["host"],
                    actor["pid"], actor["threads"], actor["load_s"],
                    ", ".join(f"{mode} {seconds:.1f} s" for mode, seconds in actor["setup_s"].items()))
    metadata = {
        "engine": "ray", "workers": engine.workers, "threads_per_worker": engine.threads_per_worker,
        "questions_per_task": engine.questions_per_task, "address": engine.address, "wall_s": wall_s,
        "timed_span_s": span_s, "busy_s": all_busy,
        "windows": windows, "tasks": len(calls), "actors_answering": len(actors),
        "actors": [{key: actor[key] for key in ("actor", "host", "pid", "threads", "load_s", "setup_s")}
                   for actor in actors.values()],
    }
    return RayRun(outcomes, metadata)


__all__ = ["ClusterError", "QAPredictor", "RayEngine", "RayRun", "check_engine", "run_on_ray"]
