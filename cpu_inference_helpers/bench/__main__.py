"""`python -m cpu_inference_helpers.bench`: the benchmark's command line (see the package's docstring)."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from cpu_inference_helpers.bench import __doc__ as PACKAGE_DOC
from cpu_inference_helpers.bench.paths import REFERENCE, PathSpec, default_paths, parse_shapes
from cpu_inference_helpers.bench.report import format_markdown, format_table, plot, summarise
from cpu_inference_helpers.bench.roofline import (
    ROOFLINE_PRECISIONS,
    bf16_and_int8_moved_apart,
    host_drift,
    measure_matmul_peak,
    roofline_moves,
)
from cpu_inference_helpers.bench.runner import run_shape_in_subprocess
from cpu_inference_helpers.infra.cli import DataclassArgumentParser, UsageError, write_output_files
from cpu_inference_helpers.infra.cli_logging import LogSetup
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.models import BERT_BASE_SHAPED_MODEL, load_qa_model_and_tokenizer
from cpu_inference_helpers.techniques.capabilities import detect_capabilities, usable_cpu_count

logger = logging.getLogger("cpu_inference_helpers.bench")

DEFAULT_SHAPES = "384x1,384x8,128x1,128x8"
#: Warnings, and the benchmark's own progress messages.
BENCH_PROGRESS = LogSetup(verbose_loggers=("cpu_inference_helpers.bench",))


def select_paths(names: str) -> list[PathSpec]:
    """The paths named in a comma-separated list, eager first (added when absent); an unknown name is a ValueError."""
    known = {path.name: path for path in default_paths()}
    wanted = comma_list(names)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return [known[REFERENCE]] + [known[name] for name in wanted if name != REFERENCE]


@dataclass
class BenchFlags:
    """What the benchmark measures: the model, the shapes, the paths, the rounds and threads, and where it writes."""

    model_name_or_path: str = field(default=BERT_BASE_SHAPED_MODEL, metadata={
        "help": "Hub id, local folder or offline random model to time (default: %(default)s)"})
    shapes: list[tuple[int, int]] = field(default_factory=lambda: parse_shapes(DEFAULT_SHAPES), metadata={
        "parse": parse_shapes, "default_text": DEFAULT_SHAPES, "help": "SEQxBATCH list (default: %(default)s)"})
    paths: list[PathSpec] | None = field(default=None, metadata={
        "parse": select_paths, "help": "comma-separated path names to run (default: all); eager is always added"})
    repeats: int = field(default=10, metadata={"help": "timed rounds per shape (default: %(default)s)"})
    threads: int = field(default=0, metadata={"help": "torch threads (default: all usable cores)"})
    output_dir: str = field(default="results/bench", metadata={
        "help": "where bench.json, bench.md and bench.png go (default: %(default)s)"})
    no_profile: bool = field(default=False, metadata={
        "help": "skip the per-operator profile of the best path per precision"})

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.threads < 0:
            raise ValueError("--repeats must be >= 1 and --threads >= 0")

    def path_specs(self) -> list[PathSpec]:
        """The paths to run: those named, or all."""
        return self.paths if self.paths is not None else default_paths()


def build_parser() -> DataclassArgumentParser:
    """The benchmark's command line: one flag per BenchFlags field."""
    return DataclassArgumentParser(BenchFlags, prog="python -m cpu_inference_helpers.bench", description=PACKAGE_DOC)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.bench`; returns the exit status."""
    parser = build_parser()
    (flags,) = parser.parse_dataclasses(argv)
    return parser.run(lambda: run_benchmark(parser, flags), log=BENCH_PROGRESS, errors=(OSError, ValueError))


def check_shapes_fit(flags: BenchFlags) -> None:
    """Load the model once, to fail early with a message on one that can't be loaded or is too short for a shape.

    (The workers load it again.)
    """
    loaded = load_qa_model_and_tokenizer(flags.model_name_or_path)
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    too_long = [f"{seq}x{batch}" for seq, batch in flags.shapes if positions and seq > positions]
    if too_long:
        raise UsageError(f"--shapes {', '.join(too_long)}: {flags.model_name_or_path} takes at most {positions} "
                         "tokens per sequence (its max_position_embeddings)")


def run_benchmark(parser: DataclassArgumentParser, flags: BenchFlags) -> int:
    """Measure every path at every shape, write bench.json / bench.md / bench.png and print the tables."""
    threads = flags.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    capabilities = detect_capabilities(include_ipex=True)
    check_shapes_fit(flags)
    output_dir = parser.output_folder(flags.output_dir)
    logger.info("measuring the matmul roofline (fp32, bf16, int8) with %d threads", threads)
    peaks = {name: measure_matmul_peak(name) for name in ROOFLINE_PRECISIONS}
    results = []
    for shape in tqdm(flags.shapes, desc="shapes"):
        results += run_shape_in_subprocess(flags.model_name_or_path, flags.path_specs(), shape, peaks, flags.repeats,
                                           threads, not flags.no_profile)
    logger.info("measuring the matmul roofline again: did the host's speed hold during the run?")
    peaks_after = {name: measure_matmul_peak(name) for name in ROOFLINE_PRECISIONS}
    drift = host_drift(peaks, peaks_after)

    title = (f"{flags.model_name_or_path}, {capabilities.model_name}, {threads} threads; roofline fp32 "
             f"{peaks['fp32'].gflops:.0f} / bf16 {peaks['bf16'].gflops:.0f} GFLOP/s, "
             f"int8 {peaks['int8'].gflops:.0f} GOP/s")
    metadata = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": flags.model_name_or_path, "threads": threads, "repeats": flags.repeats,
        "roofline": {name: peak.as_dict() for name, peak in peaks.items()},
        "roofline_after": {name: peak.as_dict() for name, peak in peaks_after.items()},
        "machine": capabilities.as_dict(),
    }
    summary = summarise(results, bf16_and_int8_moved_apart(roofline_moves(peaks, peaks_after))) + drift
    payload = {"metadata": metadata, "results": [r.as_dict() for r in results], "summary": summary}
    write_output_files(output_dir, {  # both files or neither
        "bench.json": json.dumps(payload, indent=2, default=str) + "\n",
        "bench.md": f"{title}\n\n{format_markdown(results)}\n\n" + "\n".join(drift) + "\n",
    })
    print(f"\n{title}\n")
    for name, peak in peaks.items():
        print(f"matmul roofline {name}: {peak.gflops:.0f} GFLOP/s ({peak.backend}, M,K,N={peak.shape})")
    print()
    print(format_table(results))
    print("\nsummary:\n" + "\n".join(summary))
    plot(output_dir / "bench.png", results, peaks, title)  # last: the numbers are written and printed already
    print(f"\nwrote {output_dir}/bench.json, bench.md, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
