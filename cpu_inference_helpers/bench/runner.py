"""Preparing and timing every path for one input shape, side by side, in a process of its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from cpu_inference_helpers.bench.paths import PathSpec
from cpu_inference_helpers.bench.peers import BUILDERS, PeerUnavailable
from cpu_inference_helpers.bench.profiling import profile_operators
from cpu_inference_helpers.bench.roofline import MatmulPeak, count_model_flops
from cpu_inference_helpers.infra.cli_logging import QUIET
from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.infra.fresh_process import FreshProcessError, run_in_fresh_process
from cpu_inference_helpers.infra.measurement import Measurement
from cpu_inference_helpers.infra.memory import release_freed_memory
from cpu_inference_helpers.infra.timing import LatencyStats, interleaved_samples
from cpu_inference_helpers.models import load_qa_model_and_tokenizer
from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.preparation import prepare_mode
from cpu_inference_helpers.qa.calibration import calibration_batches, load_calibration_examples
from cpu_inference_helpers.qa.data import load_examples
from cpu_inference_helpers.qa.features import prepare_validation_features
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities, detect_capabilities
from cpu_inference_helpers.techniques.dtypes import BF32, INT8
from cpu_inference_helpers.techniques.parity import max_abs_difference

logger = logging.getLogger(__name__)

#: Windows the int8 paths calibrate on per shape (speed is what the benchmark measures; `make qa` judges accuracy).
BENCH_CALIBRATION_WINDOWS = 16
#: How long one shape's timing group may take in its process (preparing ~13 paths at seq 384, batch 8 takes minutes).
GROUP_TIMEOUT_S = 3600.0
#: The row of the best bf16 path timed a second time in the int8 group (its `ran_as` names the path): int8
#: against bf16 side by side.
BF16_BESIDE_INT8 = "best bf16, timed beside int8"


@dataclass
class PathResult:
    """One path at one input shape: what was built, and a view of its `Measurement` against eager fp32."""

    path: str
    family: str
    precision: str
    seq_len: int
    batch_size: int
    ran_as: str = ""
    ran_precision: str = ""  # what it ran in (the record's precision: bf32 and bf16 fall back to fp32 on some CPUs)
    fallbacks: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)  # what prepare_for_inference decided and why (record.choices)
    skipped: str | None = None
    setup_s: float = 0.0
    median_ms: float = float("nan")
    p90_ms: float = float("nan")
    speedup_vs_eager_fp32: float = float("nan")
    eager_ms: float = float("nan")  # eager fp32's median in the same round-robin: the speed-up's yardstick
    achieved_gflops: float = float("nan")
    roofline_fraction: float = float("nan")
    max_logit_diff_vs_eager: float = float("nan")
    profile: dict[str, Any] | None = None  # for the best PyTorch path per precision: where the time goes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def show(self, measured: Measurement, eager_median_s: float, flops: float, peak: MatmulPeak) -> None:
        """Fill the timing columns from the path's `Measurement`: latency, speed-up over eager fp32's median in
        the same round-robin, achieved GFLOP/s and its fraction of the matmul roofline of its precision."""
        stats = measured.latency
        self.median_ms, self.p90_ms = 1000 * stats.median, 1000 * stats.p90
        self.speedup_vs_eager_fp32, self.eager_ms = eager_median_s / stats.median, 1000 * eager_median_s
        self.achieved_gflops = flops / stats.median / 1e9
        self.roofline_fraction = self.achieved_gflops / peak.gflops


def make_inputs(tokenizer: Any, seq_len: int, batch_size: int) -> dict[str, torch.Tensor]:
    """`batch_size` real SQuAD windows of `seq_len` tokens from the first questions of the packaged dev set."""
    examples, _ = load_examples()
    features = prepare_validation_features(examples[: 4 * batch_size], tokenizer, seq_len, max(1, seq_len // 3))
    if len(features) < batch_size:
        raise ValueError(f"not enough windows for batch {batch_size}")
    return next(features.batches(batch_size))


def _build(
    spec: PathSpec, models: dict[str, torch.nn.Module], inputs: dict[str, torch.Tensor], threads: int,
    capabilities: CpuCapabilities, calibration: list[dict[str, torch.Tensor]] | None, result: PathResult,
) -> Callable[..., Any]:
    """Prepare one path and fill in `result`'s what-ran fields and set-up time; returns the callable."""
    model = models[spec.attn_implementation]
    if spec.peer:
        start = time.perf_counter()
        runner = BUILDERS[spec.peer](model, inputs, spec.precision, threads, calibration=calibration)
        runner(**inputs)  # first inference initialises the runtime
        release_freed_memory()  # as prepare_for_inference does: a conversion frees GBs the C heap would keep
        result.ran_as, result.ran_precision, result.setup_s = spec.name, spec.precision, time.perf_counter() - start
        return runner
    ready = prepare_mode(model, inputs, ModeSpec(spec.mode, spec.precision), calibration=calibration,
                         capabilities=capabilities, **dict(spec.options))  # warmed up, returns ModelOutput
    record = ready.record
    result.ran_as, result.ran_precision, result.setup_s = record.ran_as, record.precision, record.setup_seconds
    result.fallbacks, result.choices = [str(step) for step in record.fallbacks], [str(step) for step in record.choices]
    return ready


def _logits(outputs: Any) -> torch.Tensor:
    """Start and end logits of a QuestionAnsweringModelOutput (our paths) or the peers' dict, stacked in fp32."""
    return torch.stack([outputs["start_logits"].float(), outputs["end_logits"].float()])


def timing_groups(specs: Sequence[PathSpec]) -> list[list[PathSpec]]:
    """The paths built and timed together, each group beside the reference (`specs[0]`, eager fp32).

    One group per precision: fp32, bf32, bf16, int8; each peer joins its precision's group. The
    comparisons the summary makes within a precision (best path vs its OpenVINO peer, vs `auto`) stay
    within one round-robin; across precisions (best int8 vs best bf16) it compares speed-ups, each over
    its own group's eager. Building every path at once kept ~31 prepared copies of the model in memory:
    bert-base at seq 384, batch 8 needed more than the 23 GB of a 2-core machine, and so did the bf16
    and int8 paths together.
    """
    reference, others = specs[0], list(specs[1:])
    classes = (("fp32",), (BF32,), ("bf16",), (INT8,))
    groups = [[spec for spec in others if spec.precision in members] for members in classes]
    groups.append([spec for spec in others if not any(spec.precision in members for members in classes)])
    return [[reference, *group] for group in groups if group] or [[reference]]


def bench_shape(
    specs: Sequence[PathSpec], models: dict[str, torch.nn.Module], inputs: dict[str, torch.Tensor],
    peaks: dict[str, MatmulPeak], repeats: int, threads: int, capabilities: CpuCapabilities,
    profile: bool = True, calibration: list[dict[str, torch.Tensor]] | None = None,
) -> list[PathResult]:
    """Prepare every path for one input shape, then time them all round-robin beside `specs[0]` (eager fp32).

    `calibration`: batches of the same shape for the int8 paths (training-side text, not `inputs`).
    """
    seq_len, batch_size = inputs["input_ids"].shape[1], inputs["input_ids"].shape[0]
    flops = count_model_flops(models["sdpa"], inputs)
    results, runners = [], {}
    with torch.no_grad():
        reference_logits = _logits(models["sdpa"](**inputs))
    for spec in tqdm(specs, desc=f"preparing paths (seq {seq_len}, batch {batch_size})", leave=False):
        result = PathResult(spec.name, spec.family, spec.precision, seq_len, batch_size)
        results.append(result)
        try:
            runner = _build(spec, models, inputs, threads, capabilities, calibration, result)
        except PeerUnavailable as error:
            result.skipped = str(error)
            logger.warning("skipping %s: %s", spec.name, error)
            continue
        except Exception as error:  # a peer's converter can fail in many ways: report, keep going
            result.skipped = f"failed: {error_summary(error, max_chars=200)}"
            logger.warning("skipping %s: %s", spec.name, result.skipped)
            continue
        with torch.no_grad():
            result.max_logit_diff_vs_eager = max_abs_difference(reference_logits, _logits(runner(**inputs)))
        runners[spec.name] = runner
    timed = interleaved_samples(runners, inputs, warmup=1, repeats=repeats)
    reference = LatencyStats.from_samples(timed[specs[0].name]).median
    for result in results:
        if result.path in timed:
            measured = Measurement(result.path, result.ran_as, result.ran_precision, result.fallbacks,
                                   result.setup_s, timed[result.path], samples=batch_size * repeats)
            result.show(measured, reference, flops, peaks[_roofline_precision(result)])
    if profile:
        for best in best_pytorch_paths(results).values():
            best.profile = profile_operators(runners[best.path], inputs).as_dict()
    return results


def _roofline_precision(result: PathResult) -> str:
    """The matmul peak a path is measured against: what it ran in; bf32 computes its products in bf16."""
    ran = result.ran_precision or result.precision
    return "bf16" if ran == BF32 else ran


def best_pytorch_paths(results: Sequence[PathResult]) -> dict[str, PathResult]:
    """The fastest PyTorch path per precision (auto, paths that fell back and the `BF16_BESIDE_INT8` row excluded)."""
    best: dict[str, PathResult] = {}
    for result in results:
        if (result.family != "pytorch" or result.skipped or result.fallbacks or result.path.startswith("auto")
                or result.path == BF16_BESIDE_INT8):
            continue
        if result.precision not in best or result.median_ms < best[result.precision].median_ms:
            best[result.precision] = result
    return best


def _bench_shape_here(
    model_name: str, specs: Sequence[PathSpec], shape: tuple[int, int], peaks: dict[str, MatmulPeak],
    repeats: int, threads: int, profile: bool,
) -> list[PathResult]:
    """Load the models and benchmark one shape in this process."""
    QUIET.configure()  # a fresh process: the worker half of the CLI, logging as its main does
    logging.getLogger("cpu_inference_helpers.models").setLevel(logging.ERROR)  # the parent said it once
    torch.set_num_threads(threads)
    loaded = {attn: load_qa_model_and_tokenizer(model_name, attn)
              for attn in sorted({spec.attn_implementation for spec in specs} | {"sdpa"})}
    models = {attn: item.model for attn, item in loaded.items()}
    inputs = make_inputs(loaded["sdpa"].tokenizer, *shape)
    calibration = None
    if any(spec.precision == INT8 for spec in specs):
        calibration = calibration_batches(load_calibration_examples(), loaded["sdpa"].tokenizer, shape[0],
                                          max(1, shape[0] // 3), windows=BENCH_CALIBRATION_WINDOWS,
                                          batch_size=shape[1])
    return bench_shape(specs, models, inputs, peaks, repeats, threads, detect_capabilities(), profile=profile,
                       calibration=calibration)


def run_shape_in_subprocess(
    model_name: str, specs: Sequence[PathSpec], shape: tuple[int, int], peaks: dict[str, MatmulPeak],
    repeats: int, threads: int, profile: bool,
) -> list[PathResult]:
    """Benchmark one shape, one timing group (`timing_groups`) per fresh process, in the order `specs` gives.

    A process per group: the prepared copies, compiled graphs and prepacked weights of up to 13 paths
    are all freed when it ends (within one process they were not, and ~27 paths of bert-base at seq
    384, batch 8 outgrew a 23 GB machine), and each group starts from the same clean state. Each group
    is timed beside eager; the eager row comes from the first (every result keeps its own group's
    eager median as `eager_ms`). The int8 group also times the best bf16 path of the bf16 group again
    (`with_bf16_beside_int8`), so that int8 is compared with bf16 in one round-robin. A crashed worker
    (e.g. killed for memory) is reported as skipped paths, not a lost run.
    """
    results: list[PathResult] = []
    for index, group in enumerate(timing_groups(specs)):
        group = with_bf16_beside_int8(group, specs, results)
        group_results = _run_group_in_subprocess(model_name, group, shape, peaks, repeats, threads, profile)
        results += group_results if index == 0 else group_results[1:]
    order = {spec.name: position for position, spec in enumerate(specs)}
    return sorted(results, key=lambda result: order.get(result.path, len(order)))  # BF16_BESIDE_INT8 last


def with_bf16_beside_int8(group: list[PathSpec], specs: Sequence[PathSpec], earlier: Sequence[PathResult]
                          ) -> list[PathSpec]:
    """`group`, plus the fastest bf16 PyTorch path of `earlier` results (renamed `BF16_BESIDE_INT8`) when
    `group` holds int8 PyTorch paths: int8's speed-up over bf16 then comes from one round-robin, not from two
    groups whose eager medians differ (20% apart on one steady host: docs/benchmarks.md, 2026-12-06)."""
    best_bf16 = best_pytorch_paths(earlier).get("bf16")
    if best_bf16 is None or not any(spec.precision == INT8 and spec.family == "pytorch" for spec in group):
        return group
    spec = next(spec for spec in specs if spec.name == best_bf16.path)
    return [*group, replace(spec, name=BF16_BESIDE_INT8)]


def _run_group_in_subprocess(
    model_name: str, specs: Sequence[PathSpec], shape: tuple[int, int], peaks: dict[str, MatmulPeak],
    repeats: int, threads: int, profile: bool,
) -> list[PathResult]:
    try:
        return run_in_fresh_process(_bench_shape_here, model_name, specs, shape, peaks, repeats, threads, profile,
                                    timeout=GROUP_TIMEOUT_S)
    except FreshProcessError as error:
        hint = ": out of memory? try fewer --paths" if "killed by SIGKILL" in str(error) else ""
        reason = f"the benchmark process for this shape failed ({error}){hint}"
        logger.error("seq %d, batch %d: %s", *shape, reason)
        return [PathResult(spec.name, spec.family, spec.precision, *shape, skipped=reason) for spec in specs]
