"""Throughput on one machine: N instances x K threads, each pinned to its own cores, against one instance on all.

    python -m cpu_inference_helpers.bench.throughput --modes eager,jit --layouts 1x2,2x1 --batch_sizes 1,8,32

One instance with every core minimises a batch's latency; several smaller instances usually give more
samples per second in all, because a GEMM on few cores wastes less time waiting on the others (a small
batch splits badly over many threads) and, on a multi-socket server, each instance stays on its own
memory. This is what PyTorch's launcher does with `python -m torch.backends.xeon.run_cpu --ninstances N
--ncores-per-instance K`; here each instance is a spawned process that pins itself with
`os.sched_setaffinity` and sets its torch threads, so it runs in a notebook as well.

Each instance loads the model and prepares every mode before a barrier; then, per mode and batch size,
all instances start together (another barrier) and run real SQuAD windows back to back for `seconds`.
Aggregate samples/s = all instances' samples / (the last instance's end - the first one's start).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cpu_inference_helpers.infra.cli_logging import configure_cli_logging
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.infra.output_files import prepare_output_dir, staged_outputs
from cpu_inference_helpers.infra.plotting import pyplot
from cpu_inference_helpers.infra.tables import Table
from cpu_inference_helpers.infra.timing import LatencyStats
from cpu_inference_helpers.models import DEFAULT_MODEL
from cpu_inference_helpers.modes import ModeSpec, parse_mode_list
from cpu_inference_helpers.techniques.capabilities import detect_capabilities, usable_cpu_count

logger = logging.getLogger(__name__)

#: How long an instance may take to load and prepare its modes before the run is given up.
SETUP_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Layout:
    """N instances of K threads each, e.g. "2x1"."""

    instances: int
    threads: int

    @property
    def name(self) -> str:
        return f"{self.instances}x{self.threads}"

    @classmethod
    def parse(cls, text: str) -> Layout:
        instances, sep, threads = text.strip().partition("x")
        if not sep or not instances.isdigit() or not threads.isdigit() or int(instances) < 1 or int(threads) < 1:
            raise ValueError(f"a layout is INSTANCESxTHREADS, e.g. 2x1, not {text!r}")
        return cls(int(instances), int(threads))


def parse_layouts(text: str, cores: int) -> list[Layout]:
    """Layouts from "1x2,2x1"; one that needs more cores than this process may use is refused."""
    layouts = [Layout.parse(part) for part in comma_list(text)]
    if not layouts:
        raise ValueError("name at least one layout, e.g. 1x2,2x1")
    too_big = [layout.name for layout in layouts if layout.instances * layout.threads > cores]
    if too_big:
        raise ValueError(f"layout(s) {', '.join(too_big)} need more than the {cores} cores this process may use")
    return layouts


def parse_batch_sizes(text: str) -> list[int]:
    """Batch sizes from "1,8,32"."""
    parts = comma_list(text)
    if not parts or not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise ValueError(f"batch sizes are whole numbers of at least 1, e.g. 1,8,32, not {text!r}")
    return [int(part) for part in parts]


#: Windows static int8 modes calibrate on (the packaged SQuADShifts questions, never the timed windows).
CALIBRATION_WINDOWS = 32


@dataclass
class ThroughputSettings:
    """What to measure: the model, the modes, the layouts, the batch sizes, the window length and time per cell."""

    modes: list[ModeSpec] = field(default_factory=lambda: parse_mode_list("eager,jit"))
    layouts: list[Layout] = field(default_factory=lambda: [Layout(1, usable_cpu_count()),
                                                            Layout(usable_cpu_count(), 1)])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    model_name_or_path: str = DEFAULT_MODEL
    seq_len: int = 384
    seconds: float = 10.0
    min_batches: int = 3

    def __post_init__(self) -> None:
        problems = [message for failed, message in [
            (not self.modes, "name at least one mode"),
            (not self.layouts, "name at least one layout"),
            (not self.batch_sizes or min(self.batch_sizes) < 1, "batch sizes must be at least 1"),
            (self.seq_len < 16, "the window length must be at least 16"),
            (self.seconds <= 0 or self.min_batches < 1, "seconds must be positive and min_batches at least 1"),
        ] if failed]
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class ThroughputRow:
    """One mode at one batch size in one layout."""

    mode: str
    ran_as: str
    batch_size: int
    layout: str
    instances: int
    threads: int
    samples: int
    samples_per_second: float
    mean_batch_latency_s: float
    p90_batch_latency_s: float
    setup_s: float  # the slowest instance's: loading the model and preparing every mode
    instance_cores: list[list[int]] = field(default_factory=list)  # the cores each instance was pinned to
    vs_one_instance: float = 1.0  # aggregate samples/s against the first layout (one instance on every core)


def _instance(settings: ThroughputSettings, layout: Layout, number: int, cores: list[int], barrier: Any,
              results: Any) -> None:
    """One pinned instance (a spawned process): prepare every mode, then run each cell when all are ready."""
    try:
        os.sched_setaffinity(0, cores)
        import torch

        from cpu_inference_helpers.bench.runner import make_inputs
        from cpu_inference_helpers.models import load_qa_model_and_tokenizer
        from cpu_inference_helpers.preparation import needs_calibration, prepare_mode
        from cpu_inference_helpers.qa.calibration import calibration_batches, load_calibration_examples

        torch.set_num_threads(layout.threads)
        started = time.perf_counter()
        loaded = load_qa_model_and_tokenizer(settings.model_name_or_path)
        inputs = {size: make_inputs(loaded.tokenizer, settings.seq_len, size) for size in settings.batch_sizes}
        calibration = None
        if needs_calibration(settings.modes):  # static int8 calibrates on other text than the timed windows
            calibration = calibration_batches(load_calibration_examples(), loaded.tokenizer, settings.seq_len,
                                              max(1, settings.seq_len // 3), windows=CALIBRATION_WINDOWS,
                                              batch_size=settings.batch_sizes[0])
        models = {}
        for spec in settings.modes:
            models[spec] = prepare_mode(loaded.model, inputs[settings.batch_sizes[0]], spec, calibration=calibration)
            with torch.inference_mode():
                for size in settings.batch_sizes[1:]:
                    models[spec](**inputs[size])  # new shapes re-specialise compiled modes: set-up, not timing
        setup_s = time.perf_counter() - started
        ran_as = {spec.name: models[spec].record.ran_as for spec in settings.modes}
        results.put(("ready", number, setup_s, ran_as, sorted(os.sched_getaffinity(0)), torch.get_num_threads()))
        barrier.wait(timeout=SETUP_TIMEOUT_S)
        with torch.inference_mode():
            for spec in settings.modes:
                for size in settings.batch_sizes:
                    barrier.wait(timeout=SETUP_TIMEOUT_S)
                    latencies, start = [], time.time()
                    while time.time() - start < settings.seconds or len(latencies) < settings.min_batches:
                        began = time.perf_counter()
                        models[spec](**inputs[size])
                        latencies.append(time.perf_counter() - began)
                    results.put(("cell", number, spec.name, size, start, time.time(), latencies))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the run with it
        results.put(("error", number, f"{type(error).__name__}: {error}"))
        barrier.abort()


def measure_layout(settings: ThroughputSettings, layout: Layout) -> list[ThroughputRow]:
    """Run every mode and batch size as `layout.instances` pinned processes; one row per (mode, batch size)."""
    cores = sorted(os.sched_getaffinity(0))
    if layout.instances * layout.threads > len(cores):
        raise ValueError(f"layout {layout.name} needs {layout.instances * layout.threads} cores; "
                         f"this process may use {len(cores)}")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(layout.instances), context.Queue()
    processes = [
        context.Process(target=_instance, args=(settings, layout, number,
                                                cores[number * layout.threads:(number + 1) * layout.threads],
                                                barrier, results), daemon=True)
        for number in range(layout.instances)
    ]
    for process in processes:
        process.start()
    cells: dict[tuple[str, int], list[tuple]] = {}
    setup, ran_as, pinned = [], {}, {}
    expected = layout.instances * (1 + len(settings.modes) * len(settings.batch_sizes))
    try:
        for _ in range(expected):
            try:
                message = results.get(timeout=SETUP_TIMEOUT_S + settings.seconds * 10)
            except queue.Empty as error:
                raise RuntimeError(f"layout {layout.name}: an instance stopped answering") from error
            if message[0] == "error":
                raise RuntimeError(f"layout {layout.name}, instance {message[1]}: {message[2]}")
            if message[0] == "ready":
                _, number, setup_s, ran_as, cores_used, threads = message
                setup.append(setup_s)
                pinned[number] = cores_used
                if threads != layout.threads:
                    raise RuntimeError(f"layout {layout.name}: instance {number} runs {threads} threads")
            else:
                _, _, mode, size, start, end, latencies = message
                cells.setdefault((mode, size), []).append((start, end, latencies))
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    rows = []
    for spec in settings.modes:
        for size in settings.batch_sizes:
            runs = cells[(spec.name, size)]
            latencies = [seconds for _, _, run in runs for seconds in run]
            span = max(end for _, end, _ in runs) - min(start for start, _, _ in runs)
            stats = LatencyStats.from_samples(latencies)
            rows.append(ThroughputRow(spec.name, ran_as[spec.name], size, layout.name, layout.instances,
                                      layout.threads, len(latencies) * size, len(latencies) * size / span,
                                      stats.mean, stats.p90, max(setup), [pinned[n] for n in sorted(pinned)]))
    return rows


def measure_throughput(settings: ThroughputSettings, progress: bool = True) -> list[ThroughputRow]:
    """Every layout of `settings`, one after the other; ratios against the first layout per mode and batch size."""
    from tqdm.auto import tqdm

    rows = []
    for layout in tqdm(settings.layouts, desc="layouts", disable=not progress):
        rows += measure_layout(settings, layout)
    first = {(row.mode, row.batch_size): row.samples_per_second for row in rows
             if row.layout == settings.layouts[0].name}
    for row in rows:
        row.vs_one_instance = row.samples_per_second / first[(row.mode, row.batch_size)]
    order = {spec.name: index for index, spec in enumerate(settings.modes)}
    layouts = {layout.name: index for index, layout in enumerate(settings.layouts)}
    return sorted(rows, key=lambda row: (order[row.mode], row.batch_size, layouts[row.layout]))


COLUMNS = [("mode", "{}"), ("ran as", "{}"), ("batch", "{}"), ("layout", "{}"), ("samples/s", "{:.2f}"),
           ("vs first layout", "{:.2f}x"), ("mean ms/batch", "{:.1f}"), ("p90 ms/batch", "{:.1f}"),
           ("setup s", "{:.1f}")]


def throughput_table(rows: Sequence[ThroughputRow]) -> Table:
    """One row per mode, batch size and layout: aggregate samples/s, the ratio, per-batch latency (HTML in Jupyter)."""
    return Table(COLUMNS, [
        [r.mode, r.ran_as, r.batch_size, r.layout, r.samples_per_second, r.vs_one_instance,
         1000 * r.mean_batch_latency_s, 1000 * r.p90_batch_latency_s, r.setup_s] for r in rows], text_columns=4)


def format_table(rows: Sequence[ThroughputRow]) -> str:
    """The throughput table as fixed-width text."""
    return str(throughput_table(rows))


def plot_throughput(path: Path, rows: Sequence[ThroughputRow], title: str) -> bool:
    """Aggregate samples/s against batch size, a line per layout, a panel per mode; False without matplotlib."""
    plt = pyplot(path.name)
    if plt is None:
        return False
    modes = list(dict.fromkeys(row.mode for row in rows))
    figure, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 3.6), squeeze=False, sharey=True)
    for axis, mode in zip(axes[0], modes, strict=True):
        for layout in dict.fromkeys(row.layout for row in rows):
            line = [row for row in rows if row.mode == mode and row.layout == layout]
            axis.plot([row.batch_size for row in line], [row.samples_per_second for row in line], marker="o",
                      label=f"{layout} (instances x threads)")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size (windows)")
        axis.set_title(mode)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("aggregate samples/s")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_outputs(folder: Path, rows: Sequence[ThroughputRow], settings: ThroughputSettings,
                  title: str) -> None:
    """throughput.json (rows, settings, machine), throughput.csv and throughput.png: all new or all old."""
    with staged_outputs(folder) as stage:
        payload = {
            "metadata": {
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "title": title,
                "settings": {**asdict(settings), "modes": [spec.name for spec in settings.modes],
                             "layouts": [layout.name for layout in settings.layouts]},
                "machine": detect_capabilities(include_ipex=True).as_dict(),
            },
            "rows": [asdict(row) for row in rows],
        }
        stage.path("throughput.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        with stage.path("throughput.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)
        plot_throughput(stage.path("throughput.png"), rows, title)


def describe(settings: ThroughputSettings) -> str:
    """The plot's and the table's title: model, window length, machine."""
    return (f"{settings.model_name_or_path}, seq {settings.seq_len}, {settings.seconds:g} s per cell, "
            f"{detect_capabilities().model_name}, {usable_cpu_count()} cores")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cpu_inference_helpers.bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    cores = usable_cpu_count()
    parser.add_argument("--model_name_or_path", default=DEFAULT_MODEL)
    parser.add_argument("--modes", default="eager,jit", help="modes as in run_qa (default: %(default)s)")
    parser.add_argument("--layouts", default=f"1x{cores},{cores}x1",
                        help="INSTANCESxTHREADS list; the first is the reference (default: %(default)s)")
    parser.add_argument("--batch_sizes", default="1,8,32", help="windows per batch (default: %(default)s)")
    parser.add_argument("--seq_len", type=int, default=384)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per cell (default: %(default)s)")
    parser.add_argument("--output_dir", default="results/throughput")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.bench.throughput`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = ThroughputSettings(
            modes=parse_mode_list(args.modes), layouts=parse_layouts(args.layouts, usable_cpu_count()),
            batch_sizes=parse_batch_sizes(args.batch_sizes),
            model_name_or_path=args.model_name_or_path, seq_len=args.seq_len, seconds=args.seconds,
        )
    except ValueError as error:
        parser.error(str(error))
    configure_cli_logging(verbose_loggers=("cpu_inference_helpers",))
    try:
        folder = prepare_output_dir(args.output_dir)
        title = describe(settings)
        rows = measure_throughput(settings)
        write_outputs(folder, rows, settings, title)
    except (OSError, RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"\n{title}\n\n{format_table(rows)}\n\nsamples/s = all instances' windows / wall time from the first "
          "start to the last end; each instance pinned to its own cores (os.sched_setaffinity) with torch threads "
          f"= its cores.\nwrote {folder}/throughput.json, throughput.csv, throughput.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
