"""Throughput on one machine: N instances x K threads, each pinned to its own cores, against one instance on all.

    python -m cpu_inference_helpers.bench.throughput --modes eager,jit --layouts 1x2,2x1 --batch_sizes 1,8,32

One instance with every core minimises a batch's latency; several smaller instances usually give more
samples per second in all, because a GEMM on few cores wastes less time waiting on the others (a small
batch splits badly over many threads) and, on a multi-socket server, each instance stays on its own
memory. This is what PyTorch's launcher does with `python -m torch.backends.xeon.run_cpu --ninstances N
--ncores-per-instance K`; here each instance is a fresh process (`infra.fresh_process`) that pins itself
with `os.sched_setaffinity` to the cores the launcher's topology reading gives it (`infra.core_lists`:
physical cores before SMT siblings, one NUMA node per instance) and sets its torch threads, so it runs in
a notebook as well.

Each instance loads the model and prepares every mode before a barrier (`infra.process_barrier`); then,
per mode and batch size, all instances start together (another round of the barrier) and run real SQuAD
windows back to back for `seconds`.
Aggregate samples/s = all instances' samples / (the last instance's end - the first one's start).
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cpu_inference_helpers.infra.cli import DataclassArgumentParser
from cpu_inference_helpers.infra.cli_logging import PACKAGE_PROGRESS
from cpu_inference_helpers.infra.core_lists import core_lists
from cpu_inference_helpers.infra.errors import refuse_failed_checks
from cpu_inference_helpers.infra.fresh_process import FreshProcess, FreshProcessError, start_fresh_process
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.infra.measurement import Measurement
from cpu_inference_helpers.infra.output_files import staged_outputs
from cpu_inference_helpers.infra.plotting import pyplot, save_figure
from cpu_inference_helpers.infra.process_barrier import FolderBarrier
from cpu_inference_helpers.infra.tables import Table
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


def _usable_layouts(text: str) -> list[Layout]:
    return parse_layouts(text, usable_cpu_count())


def _default_layouts_text() -> str:
    return f"1x{usable_cpu_count()},{usable_cpu_count()}x1"


@dataclass
class ThroughputSettings:
    """What to measure: the model, the modes, the layouts, the batch sizes, the window length and time per cell."""

    modes: list[ModeSpec] = field(default_factory=lambda: parse_mode_list("eager,jit"), metadata={
        "parse": parse_mode_list, "default_text": "eager,jit", "help": "modes as in run_qa (default: eager,jit)"})
    layouts: list[Layout] = field(default_factory=lambda: _usable_layouts(_default_layouts_text()), metadata={
        "parse": _usable_layouts, "default_text": _default_layouts_text,
        "help": "INSTANCESxTHREADS list; the first is the reference (default: one instance on every core, "
                "then one single-threaded instance per core)"})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32], metadata={
        "parse": parse_batch_sizes, "default_text": "1,8,32", "help": "windows per batch (default: 1,8,32)"})
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Hub id, local folder, minilm-squad or a random model (default: %(default)s)"})
    seq_len: int = field(default=384, metadata={"help": "tokens per window (default: %(default)s)"})
    seconds: float = field(default=10.0, metadata={"help": "time per cell (default: %(default)s)"})
    min_batches: int = field(default=3, metadata={"flag": False})

    def __post_init__(self) -> None:
        refuse_failed_checks([
            (not self.modes, "name at least one mode"),
            (not self.layouts, "name at least one layout"),
            (not self.batch_sizes or min(self.batch_sizes) < 1, "batch sizes must be at least 1"),
            (self.seq_len < 16, "the window length must be at least 16"),
            (self.seconds <= 0 or self.min_batches < 1, "seconds must be positive and min_batches at least 1"),
        ])


@dataclass
class ThroughputRow:
    """One mode at one batch size in one layout: a view of its `Measurement` over all instances."""

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

    @classmethod
    def from_measurement(cls, measured: Measurement, batch_size: int, layout: Layout,
                         instance_cores: list[list[int]]) -> ThroughputRow:
        """The row of `measured` (all instances' calls, their wall-clock span) at `batch_size` in `layout`."""
        stats = measured.latency
        return cls(measured.name, measured.ran_as, batch_size, layout.name, layout.instances, layout.threads,
                   measured.samples, measured.samples_per_second, stats.mean, stats.p90, measured.setup_s,
                   instance_cores)


@dataclass
class _InstanceRun:
    """What one instance measured: its set-up, what each mode ran as, where it ran, and every cell's timings."""

    setup_s: float
    ran_as: dict[str, str]
    precision: dict[str, str]
    fallbacks: dict[str, list[str]]
    cores: list[int]
    threads: int
    cells: dict[tuple[str, int], tuple[float, float, list[float]]]  # (mode, batch) -> (start, end, latencies)


def _instance(settings: ThroughputSettings, layout: Layout, number: int, cores: list[int],
              barrier: FolderBarrier) -> _InstanceRun:
    """One pinned instance (a fresh process): prepare every mode, then run each cell when all instances are ready."""
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
        records = {spec.name: models[spec].record for spec in settings.modes}
        run = _InstanceRun(time.perf_counter() - started, {name: record.ran_as for name, record in records.items()},
                           {name: record.precision for name, record in records.items()},
                           {name: [str(step) for step in record.fallbacks] for name, record in records.items()},
                           sorted(os.sched_getaffinity(0)), torch.get_num_threads(), {})
        barrier.wait(number, timeout=SETUP_TIMEOUT_S)
        with torch.inference_mode():
            for spec in settings.modes:
                for size in settings.batch_sizes:
                    barrier.wait(number, timeout=SETUP_TIMEOUT_S)
                    latencies, start = [], time.time()
                    while time.time() - start < settings.seconds or len(latencies) < settings.min_batches:
                        began = time.perf_counter()
                        models[spec](**inputs[size])
                        latencies.append(time.perf_counter() - began)
                    run.cells[(spec.name, size)] = (start, time.time(), latencies)
        return run
    except BaseException:
        barrier.abort()  # the other instances stop waiting for this one
        raise


def _pinned_from_the_start(cores: list[int]) -> list[str]:
    """`taskset -c CORES` where it exists: the instance is pinned before Python and OpenMP start (OpenMP reads
    the affinity mask once, when torch loads it); without it the instance pins itself, a little later."""
    return ["taskset", "-c", ",".join(map(str, cores))] if shutil.which("taskset") else []


def _wait_for_all(processes: list[FreshProcess], barrier: FolderBarrier, timeout: float) -> None:
    """Wait until every instance has exited; one that dies without answering (a signal, the OOM killer) breaks
    the barrier at once, so the others stop waiting for it instead of waiting out their set-up timeout."""
    deadline = time.monotonic() + timeout
    while any(process.running() for process in processes):
        if time.monotonic() > deadline:
            barrier.abort()
            for process in processes:
                process.kill()
            raise RuntimeError(f"the instances did not finish within {timeout:.0f} s; stopped them")
        if any(process.died_hard() for process in processes):
            barrier.abort()
        time.sleep(0.2)


def measure_layout(settings: ThroughputSettings, layout: Layout) -> list[ThroughputRow]:
    """Run every mode and batch size as `layout.instances` pinned processes; one row per (mode, batch size)."""
    try:  # physical cores before SMT siblings, one NUMA node per instance where it fits (PyTorch's launcher's view)
        pinned = core_lists(layout.instances, layout.threads)
    except ValueError as error:
        raise ValueError(f"layout {layout.name}: {error}") from None
    timeout = SETUP_TIMEOUT_S + len(settings.modes) * len(settings.batch_sizes) * (settings.seconds * 10 + 60)
    with tempfile.TemporaryDirectory(prefix="throughput-barrier-") as folder:
        barrier = FolderBarrier(Path(folder), layout.instances)
        processes = [start_fresh_process(_instance, settings, layout, number, cores, barrier,
                                         command_prefix=_pinned_from_the_start(cores))
                     for number, cores in enumerate(pinned)]
        try:
            try:
                _wait_for_all(processes, barrier, timeout)
            except RuntimeError as error:
                raise RuntimeError(f"layout {layout.name}: {error}") from None
            answers: list[_InstanceRun | FreshProcessError] = []
            for process in processes:
                try:
                    answers.append(process.result(timeout=0))
                except FreshProcessError as error:
                    answers.append(error)
        finally:  # an interrupt, or a failure: no instance runs on
            for process in processes:
                process.kill()
    failures = [(number, error) for number, error in enumerate(answers) if isinstance(error, FreshProcessError)]
    if failures:  # the first cause, not the instances that only saw the barrier break
        number, error = next(((n, e) for n, e in failures if "BrokenBarrierError" not in str(e)), failures[0])
        raise RuntimeError(f"layout {layout.name}, instance {number}: {error}")
    runs = [answer for answer in answers if not isinstance(answer, FreshProcessError)]  # all of them
    wrong = [number for number, run in enumerate(runs) if run.threads != layout.threads]
    if wrong:
        raise RuntimeError(f"layout {layout.name}: instance(s) {wrong} did not run {layout.threads} threads")
    rows = []
    for spec in settings.modes:
        for size in settings.batch_sizes:
            cells = [run.cells[(spec.name, size)] for run in runs]
            latencies = [seconds for _, _, cell in cells for seconds in cell]
            span = max(end for _, end, _ in cells) - min(start for start, _, _ in cells)
            measured = Measurement(spec.name, runs[0].ran_as[spec.name], runs[0].precision[spec.name],
                                   runs[0].fallbacks[spec.name], max(run.setup_s for run in runs), latencies,
                                   samples=len(latencies) * size, wall_s=span)
            rows.append(ThroughputRow.from_measurement(measured, size, layout, [run.cores for run in runs]))
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
    save_figure(figure, path)
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


@dataclass
class ThroughputFlags:
    """The command line's own flag: where the files go."""

    output_dir: str = field(default="results/throughput", metadata={"help": "output folder (default: %(default)s)"})


def build_parser() -> DataclassArgumentParser:
    """The command line's flags, generated from `ThroughputSettings` and `ThroughputFlags`."""
    return DataclassArgumentParser(ThroughputSettings, ThroughputFlags,
                                   prog="python -m cpu_inference_helpers.bench.throughput", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.bench.throughput`; returns the exit status."""
    parser = build_parser()
    settings, flags = parser.parse_dataclasses(argv)
    folder = parser.output_folder(flags.output_dir)

    def measure_and_write() -> None:
        title = describe(settings)
        rows = measure_throughput(settings)
        write_outputs(folder, rows, settings, title)
        print(f"\n{title}\n\n{format_table(rows)}\n\nsamples/s = all instances' windows / wall time from the first "
              "start to the last end; each instance pinned to its own cores (os.sched_setaffinity; physical cores "
              f"before SMT siblings) with torch threads = its cores.\nwrote {folder}/throughput.json, throughput.csv, "
              "throughput.png")

    return parser.run(measure_and_write, log=PACKAGE_PROGRESS)


if __name__ == "__main__":
    sys.exit(main())
