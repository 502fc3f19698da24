"""Benchmark every inference path against eager fp32, the peers and the hardware limit, in one run.

    python -m cpu_inference_helpers.bench                        # bert-base, seq 384/128, batch 1/8
    python -m cpu_inference_helpers.bench --shapes 384x1 --repeats 20

For each input shape, every path is prepared first (optimisation, tracing, compilation,
export: reported as set-up), then all paths are timed round-robin in the same process
(`interleaved_latency`), so the ratios hold on a shared, noisy machine. Paths: eager fp32
with SDPA and with eager attention, TorchScript jit+freeze, IPEX (both fp32 kernel
selections), IPEX+jit, torch.compile (Inductor with freezing), their bf16 variants, the
helpers' `auto` choice, and the peers ONNX Runtime and OpenVINO when installed
(`pip install -e '.[peers]'`). The machine's matmul peak per dtype (the roofline) is
measured in the same run; each path is reported as a speed-up over eager fp32 and as the
fraction of that roofline its achieved FLOP rate reaches.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .benchmarking import LatencyStats, interleaved_latency
from .capabilities import CpuCapabilities, detect_capabilities
from .models import BERT_BASE_SHAPED_MODEL, load_qa_model_and_tokenizer
from .optimize import prepare_for_inference
from .peers import BUILDERS, PeerUnavailable
from .profiling import Profile, profile_operators
from .qa.data import load_examples
from .qa.features import prepare_validation_features
from .roofline import MatmulPeak, count_model_flops, measure_matmul_peak
from .tracing import max_abs_difference

logger = logging.getLogger("cpu_inference_helpers.bench")

REFERENCE = "eager"
AUTO_TOLERANCE = 1.10  # the auto choice must be within 10% of the best PyTorch path


@dataclass(frozen=True)
class PathSpec:
    """One way to run the model: a PyTorch mode through `prepare_for_inference`, or a peer runtime."""

    name: str
    precision: str = "fp32"
    mode: str | None = None  # prepare_for_inference mode; None for peers
    peer: str | None = None
    attn_implementation: str = "sdpa"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def family(self) -> str:
        return "peer" if self.peer else "pytorch"


def default_paths() -> list[PathSpec]:
    """Every path the benchmark knows, eager fp32 (SDPA attention) first: the reference."""
    onednn, mkl = (("auto_kernel_selection", True),), (("auto_kernel_selection", False),)
    paths = [
        PathSpec(REFERENCE, mode="eager"),
        PathSpec("eager (eager attention)", mode="eager", attn_implementation="eager"),
        PathSpec("jit", mode="jit"),
        PathSpec("ipex oneDNN", mode="ipex", options=onednn),
        PathSpec("ipex+jit oneDNN", mode="ipex+jit", options=onednn),
        PathSpec("ipex+jit MKL", mode="ipex+jit", options=mkl),
        PathSpec("ipex+jit oneDNN (eager attention)", mode="ipex+jit", attn_implementation="eager", options=onednn),
        PathSpec("compile", mode="compile"),
        PathSpec("auto", mode="auto"),
    ]
    for mode in ("eager", "jit", "ipex", "ipex+jit", "compile", "auto"):
        paths.append(PathSpec(f"{mode}:bf16", "bf16", mode=mode))
    paths.insert(-2, PathSpec("ipex+jit:bf16 (eager attention)", "bf16", mode="ipex+jit", attn_implementation="eager"))
    paths += [
        PathSpec("onnxruntime", peer="onnxruntime"),
        PathSpec("openvino", peer="openvino"),
        PathSpec("openvino:bf16", "bf16", peer="openvino"),
    ]
    return paths


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """Parse "384x1,128x8" into (sequence length, batch size) pairs."""
    shapes = []
    for item in text.split(","):
        seq, _, batch = item.strip().lower().partition("x")
        try:
            shape = (int(seq), int(batch))
        except ValueError:
            raise ValueError(f"bad shape {item!r}: write SEQxBATCH, e.g. 384x1") from None
        if min(shape) < 1 or shape[0] < 16:
            raise ValueError(f"bad shape {item!r}: sequence length >= 16 and batch >= 1")
        shapes.append(shape)
    if not shapes:
        raise ValueError("no shape given")
    return shapes


@dataclass
class PathResult:
    """One path at one input shape."""

    path: str
    family: str
    precision: str
    seq_len: int
    batch_size: int
    ran_as: str = ""
    fallbacks: list[str] = field(default_factory=list)
    skipped: str | None = None
    setup_s: float = 0.0
    median_ms: float = float("nan")
    p90_ms: float = float("nan")
    speedup_vs_eager_fp32: float = float("nan")
    achieved_gflops: float = float("nan")
    roofline_fraction: float = float("nan")
    max_logit_diff_vs_eager: float = float("nan")
    profile: dict[str, Any] | None = None  # for the best PyTorch path per precision: where the time goes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_inputs(tokenizer: Any, seq_len: int, batch_size: int) -> dict[str, torch.Tensor]:
    """`batch_size` real SQuAD windows of `seq_len` tokens from the packaged dev subset."""
    examples, _ = load_examples()
    features = prepare_validation_features(examples[: 4 * batch_size], tokenizer, seq_len, max(1, seq_len // 3))
    if len(features) < batch_size:
        raise ValueError(f"not enough windows for batch {batch_size}")
    return next(features.batches(batch_size))


def _build(
    spec: PathSpec, models: dict[str, torch.nn.Module], inputs: dict[str, torch.Tensor], threads: int,
    capabilities: CpuCapabilities,
) -> tuple[Callable[..., Any], str, list[str], float]:
    """Prepare one path; returns the callable, what it ran as, its fallbacks and its set-up seconds."""
    model = models[spec.attn_implementation]
    start = time.perf_counter()
    if spec.peer:
        runner = BUILDERS[spec.peer](model, inputs, spec.precision, threads)
        runner(**inputs)  # first inference initialises the runtime
        return runner, spec.name, [], time.perf_counter() - start
    ready = prepare_for_inference(model, inputs, mode=spec.mode, precision=spec.precision,
                                  capabilities=capabilities, **dict(spec.options))
    if not ready.traced:
        ready(**inputs)  # the warm-up trace_model already does for traced models
    record = ready.record
    ran_as = record.mode if record.precision == "fp32" else f"{record.mode}:{record.precision}"
    if spec.mode == "auto":
        ran_as = f"auto -> {ran_as}"
    return ready, ran_as, list(record.fallbacks), time.perf_counter() - start


def _logits(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, dict):
        start, end = outputs["start_logits"], outputs["end_logits"]
    elif hasattr(outputs, "start_logits"):
        start, end = outputs.start_logits, outputs.end_logits
    else:
        start, end = outputs[0], outputs[1]
    return torch.stack([start.float(), end.float()])


def bench_shape(
    specs: Sequence[PathSpec], models: dict[str, torch.nn.Module], inputs: dict[str, torch.Tensor],
    peaks: dict[str, MatmulPeak], repeats: int, threads: int, capabilities: CpuCapabilities,
    profile: bool = True,
) -> list[PathResult]:
    """Prepare every path for one input shape, then time them all round-robin."""
    seq_len, batch_size = inputs["input_ids"].shape[1], inputs["input_ids"].shape[0]
    flops = count_model_flops(models["sdpa"], inputs)
    results, runners = [], {}
    with torch.no_grad():
        reference_logits = _logits(models["sdpa"](**inputs))
    for spec in tqdm(specs, desc=f"preparing paths (seq {seq_len}, batch {batch_size})", leave=False):
        result = PathResult(spec.name, spec.family, spec.precision, seq_len, batch_size)
        results.append(result)
        try:
            runner, result.ran_as, result.fallbacks, result.setup_s = _build(spec, models, inputs, threads,
                                                                              capabilities)
        except PeerUnavailable as error:
            result.skipped = str(error)
            logger.warning("skipping %s: %s", spec.name, error)
            continue
        except Exception as error:  # a peer's converter can fail in many ways: report, keep going
            result.skipped = f"failed: {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
            logger.warning("skipping %s: %s", spec.name, result.skipped)
            continue
        with torch.no_grad():
            result.max_logit_diff_vs_eager = max_abs_difference(reference_logits, _logits(runner(**inputs)))
        runners[spec.name] = runner
    stats: dict[str, LatencyStats] = interleaved_latency(runners, inputs, warmup=1, repeats=repeats)
    reference = stats[specs[0].name].median
    for result in results:
        if result.path not in stats:
            continue
        median = stats[result.path].median
        result.median_ms, result.p90_ms = 1000 * median, 1000 * stats[result.path].p90
        result.speedup_vs_eager_fp32 = reference / median
        result.achieved_gflops = flops / median / 1e9
        result.roofline_fraction = result.achieved_gflops / peaks[result.precision].gflops
    if profile:
        for best in best_pytorch_paths(results).values():
            best.profile = profile_operators(runners[best.path], inputs).as_dict()
    return results


def best_pytorch_paths(results: Sequence[PathResult]) -> dict[str, PathResult]:
    """The fastest PyTorch path per precision (auto and paths that fell back excluded)."""
    best: dict[str, PathResult] = {}
    for result in results:
        if result.family != "pytorch" or result.skipped or result.fallbacks or result.path.startswith("auto"):
            continue
        if result.precision not in best or result.median_ms < best[result.precision].median_ms:
            best[result.precision] = result
    return best


def _bench_shape_here(
    model_name: str, specs: Sequence[PathSpec], shape: tuple[int, int], peaks: dict[str, MatmulPeak],
    repeats: int, threads: int, profile: bool,
) -> list[PathResult]:
    """Load the models and benchmark one shape in this process."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("cpu_inference_helpers.models").setLevel(logging.ERROR)  # the parent said it once
    torch.set_num_threads(threads)
    loaded = {attn: load_qa_model_and_tokenizer(model_name, attn)
              for attn in sorted({spec.attn_implementation for spec in specs} | {"sdpa"})}
    models = {attn: item.model for attn, item in loaded.items()}
    inputs = make_inputs(loaded["sdpa"].tokenizer, *shape)
    return bench_shape(specs, models, inputs, peaks, repeats, threads, detect_capabilities(), profile=profile)


def run_shape_in_subprocess(
    model_name: str, specs: Sequence[PathSpec], shape: tuple[int, int], peaks: dict[str, MatmulPeak],
    repeats: int, threads: int, profile: bool,
) -> list[PathResult]:
    """Benchmark one shape in a fresh process: compiled graphs and prepacked weight copies of ~20 paths
    would otherwise pile up from shape to shape, and each shape starts from the same clean state.
    A crashed worker (e.g. killed for memory) is reported as skipped paths, not a lost run."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        future = executor.submit(_bench_shape_here, model_name, specs, shape, peaks, repeats, threads, profile)
        try:
            return future.result()
        except BrokenProcessPool as error:
            reason = f"the benchmark process for this shape died ({error}): out of memory? try fewer --paths"
            logger.error("seq %d, batch %d: %s", *shape, reason)
            return [PathResult(spec.name, spec.family, spec.precision, *shape, skipped=reason) for spec in specs]


def summarise(results: Sequence[PathResult]) -> list[str]:
    """Per shape: the best PyTorch paths per precision, the peers, and how `auto` compares."""
    lines = []
    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    for seq_len, batch_size in shapes:
        rows = [r for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size) and not r.skipped]
        timed = {r.path: r for r in rows}
        lines.append(f"seq {seq_len}, batch {batch_size}:")
        for precision, best in best_pytorch_paths(rows).items():
            text = (f"  best {precision} PyTorch path: {best.path} {best.speedup_vs_eager_fp32:.2f}x eager fp32, "
                    f"{best.roofline_fraction:.0%} of the {precision} matmul roofline")
            peer = timed.get("openvino" if precision == "fp32" else "openvino:bf16")
            if peer:
                text += f"; OpenVINO {precision} is {best.median_ms / peer.median_ms:.2f}x as fast as it"
            lines.append(text)
            if best.profile:
                lines.append(f"    profile: {Profile(**best.profile).summary()}")
            auto = timed.get("auto" if precision == "fp32" else "auto:bf16")
            if auto:
                ratio = auto.median_ms / best.median_ms
                verdict = "within" if ratio <= AUTO_TOLERANCE else "NOT within"
                lines.append(f"  auto ({auto.ran_as}) takes {ratio:.2f}x the best {precision} time: "
                             f"{verdict} {AUTO_TOLERANCE - 1:.0%}")
    return lines


COLUMNS = [("path", "{}"), ("ran as", "{}"), ("ms", "{:.1f}"), ("p90 ms", "{:.1f}"), ("vs eager", "{:.2f}x"),
           ("GFLOP/s", "{:.0f}"), ("roofline", "{:.0%}"), ("setup s", "{:.1f}"), ("max |dlogit|", "{:.2g}")]


def format_table(results: Sequence[PathResult]) -> str:
    """A text table per shape, skipped paths listed with the reason."""
    blocks = []
    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    for seq_len, batch_size in shapes:
        rows = [r for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size)]
        cells = [[fmt.format(value) for (_, fmt), value in zip(COLUMNS, (
            r.path, r.ran_as, r.median_ms, r.p90_ms, r.speedup_vs_eager_fp32, r.achieved_gflops,
            r.roofline_fraction, r.setup_s, r.max_logit_diff_vs_eager), strict=True)]
            for r in rows if not r.skipped]
        header = [name for name, _ in COLUMNS]
        widths = [max(len(c) for c in column) for column in zip(header, *cells, strict=True)]
        lines = [f"seq {seq_len}, batch {batch_size}"]
        for row in [header, ["-" * w for w in widths], *cells]:
            lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                                   enumerate(zip(row, widths, strict=True))))
        lines += [f"skipped {r.path}: {r.skipped}" for r in rows if r.skipped]
        lines += [f"fallback in {r.path}: {reason}" for r in rows for reason in r.fallbacks]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_markdown(results: Sequence[PathResult]) -> str:
    """Speed-up over eager fp32 (and share of the roofline) per path and shape, as a Markdown table."""
    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    paths = list(dict.fromkeys(r.path for r in results))
    by_key = {(r.path, r.seq_len, r.batch_size): r for r in results}
    header = "| path | " + " | ".join(f"seq {s}, batch {b}" for s, b in shapes) + " |"
    lines = [header, "|" + " --- |" * (len(shapes) + 1)]
    for path in paths:
        cells = []
        for seq_len, batch_size in shapes:
            r = by_key.get((path, seq_len, batch_size))
            if r is None or r.skipped:
                cells.append("skipped")
            else:
                cell = f"{r.median_ms:.0f} ms, {r.speedup_vs_eager_fp32:.2f}x ({r.roofline_fraction:.0%})"
                cells.append(cell + (" fell back" if r.fallbacks else ""))
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: Path, results: Sequence[PathResult], peaks: dict[str, MatmulPeak], title: str) -> None:
    """One panel per shape: speed-up over eager fp32 per path, with the fp32 and bf16 roofline marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    columns = min(2, len(shapes))
    grid_rows = -(-len(shapes) // columns)
    figure, axes = plt.subplots(grid_rows, columns, figsize=(7.5 * columns, 6 * grid_rows), squeeze=False)
    for axis in axes.flat[len(shapes):]:
        axis.set_visible(False)
    for axis, (seq_len, batch_size) in zip(axes.flat, shapes, strict=False):
        rows = [r for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size) and not r.skipped]
        colors = ["#9e9e9e" if r.fallbacks else "#7570b3" if r.family == "peer" else
                  "#d95f02" if r.precision == "bf16" else "#1b9e77" for r in rows]
        bars = axis.barh([r.path for r in rows], [r.speedup_vs_eager_fp32 for r in rows], color=colors)
        for bar, r in zip(bars, rows, strict=True):
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                      f" {r.speedup_vs_eager_fp32:.2f}x ({r.roofline_fraction:.0%})", va="center", fontsize=7)
        reference = next(r for r in rows if r.path == REFERENCE)
        for precision, style in (("fp32", "--"), ("bf16", ":")):
            limit = peaks[precision].gflops / reference.achieved_gflops  # eager's time / the roofline time
            axis.axvline(limit, color="black", linestyle=style, linewidth=1, label=f"{precision} roofline")
        axis.set_title(f"seq {seq_len}, batch {batch_size}", fontsize=10)
        axis.set_xlabel("speed-up vs eager fp32 (label: share of its precision's roofline)")
        axis.set_xlim(0, max(peaks["bf16"].gflops / reference.achieved_gflops,
                             max(r.speedup_vs_eager_fp32 for r in rows)) * 1.15)
        axis.invert_yaxis()
        axis.legend(fontsize=8, loc="upper right")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cpu_inference_helpers.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model_name_or_path", default=BERT_BASE_SHAPED_MODEL)
    parser.add_argument("--shapes", default="384x1,384x8,128x1,128x8", help="SEQxBATCH list (default: %(default)s)")
    parser.add_argument("--paths", help="comma-separated path names to run (default: all); eager is always added")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per shape (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all usable cores)")
    parser.add_argument("--output_dir", default="results/bench")
    parser.add_argument("--no_profile", action="store_true",
                        help="skip the per-operator profile of the best path per precision")
    return parser


def select_paths(parser: argparse.ArgumentParser, names: str | None) -> list[PathSpec]:
    """The paths named on the command line (eager first), or all; unknown names end with a message."""
    paths = default_paths()
    if not names:
        return paths
    known = {p.name: p for p in paths}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return [known[REFERENCE]] + [known[name] for name in wanted if name != REFERENCE]


def usable_cpu_count() -> int:
    """The cores this process may run on (its affinity mask on Linux; `os.cpu_count()` elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.bench`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        shapes = parse_shapes(args.shapes)
    except ValueError as error:
        parser.error(str(error))
    if args.repeats < 1 or args.threads < 0:
        parser.error("--repeats must be >= 1 and --threads >= 0")
    specs = select_paths(parser, args.paths)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("cpu_inference_helpers.bench").setLevel(logging.INFO)
    threads = args.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    capabilities = detect_capabilities()

    try:  # fail early, with a message, on a model that can't be loaded; the workers load it again
        load_qa_model_and_tokenizer(args.model_name_or_path)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logger.info("measuring the matmul roofline (fp32, bf16) with %d threads", threads)
    peaks = {"fp32": measure_matmul_peak(torch.float32), "bf16": measure_matmul_peak(torch.bfloat16)}
    results = []
    for shape in tqdm(shapes, desc="shapes"):
        results += run_shape_in_subprocess(args.model_name_or_path, specs, shape, peaks, args.repeats, threads,
                                           not args.no_profile)

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    title = (f"{args.model_name_or_path}, {capabilities.model_name}, {threads} threads; roofline fp32 "
             f"{peaks['fp32'].gflops:.0f} / bf16 {peaks['bf16'].gflops:.0f} GFLOP/s")
    metadata = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": args.model_name_or_path, "threads": threads, "repeats": args.repeats,
        "roofline": {name: peak.as_dict() for name, peak in peaks.items()},
        "machine": capabilities.as_dict(),
    }
    payload = {"metadata": metadata, "results": [r.as_dict() for r in results], "summary": summarise(results)}
    (output_dir / "bench.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plot(output_dir / "bench.png", results, peaks, title)
    (output_dir / "bench.md").write_text(f"{title}\n\n{format_markdown(results)}\n")
    print(f"\n{title}\n")
    for name, peak in peaks.items():
        print(f"matmul roofline {name}: {peak.gflops:.0f} GFLOP/s ({peak.backend}, M,K,N={peak.shape})")
    print()
    print(format_table(results))
    print("\nsummary:\n" + "\n".join(summarise(results)))
    print(f"\nwrote {output_dir}/bench.json, bench.md, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
