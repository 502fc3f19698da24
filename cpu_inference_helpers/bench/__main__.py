"""`python -m cpu_inference_helpers.bench`: the benchmark's command line (see the package's docstring)."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cpu_inference_helpers.bench import __doc__ as PACKAGE_DOC
from cpu_inference_helpers.bench.paths import REFERENCE, PathSpec, default_paths, parse_shapes
from cpu_inference_helpers.bench.report import format_markdown, format_table, plot, summarise
from cpu_inference_helpers.bench.roofline import ROOFLINE_PRECISIONS, measure_matmul_peak
from cpu_inference_helpers.bench.runner import run_shape_in_subprocess
from cpu_inference_helpers.infra.cli_logging import configure_cli_logging
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.infra.output_files import staged_outputs
from cpu_inference_helpers.models import BERT_BASE_SHAPED_MODEL, load_qa_model_and_tokenizer
from cpu_inference_helpers.techniques.capabilities import detect_capabilities, usable_cpu_count

logger = logging.getLogger("cpu_inference_helpers.bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cpu_inference_helpers.bench", description=PACKAGE_DOC,
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
    wanted = comma_list(names)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return [known[REFERENCE]] + [known[name] for name in wanted if name != REFERENCE]


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
    configure_cli_logging(verbose_loggers=("cpu_inference_helpers.bench",))
    threads = args.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    capabilities = detect_capabilities(include_ipex=True)

    try:  # fail early, with a message, on a model that can't be loaded; the workers load it again
        loaded = load_qa_model_and_tokenizer(args.model_name_or_path)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    too_long = [f"{seq}x{batch}" for seq, batch in shapes if positions and seq > positions]
    if too_long:
        parser.error(f"--shapes {', '.join(too_long)}: {args.model_name_or_path} takes at most {positions} tokens "
                     "per sequence (its max_position_embeddings)")
    del loaded
    logger.info("measuring the matmul roofline (fp32, bf16, int8) with %d threads", threads)
    peaks = {name: measure_matmul_peak(name) for name in ROOFLINE_PRECISIONS}
    results = []
    for shape in tqdm(shapes, desc="shapes"):
        results += run_shape_in_subprocess(args.model_name_or_path, specs, shape, peaks, args.repeats, threads,
                                           not args.no_profile)

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    title = (f"{args.model_name_or_path}, {capabilities.model_name}, {threads} threads; roofline fp32 "
             f"{peaks['fp32'].gflops:.0f} / bf16 {peaks['bf16'].gflops:.0f} GFLOP/s, "
             f"int8 {peaks['int8'].gflops:.0f} GOP/s")
    metadata = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": args.model_name_or_path, "threads": threads, "repeats": args.repeats,
        "roofline": {name: peak.as_dict() for name, peak in peaks.items()},
        "machine": capabilities.as_dict(),
    }
    payload = {"metadata": metadata, "results": [r.as_dict() for r in results], "summary": summarise(results)}
    with staged_outputs(output_dir) as stage:  # both files or neither
        stage.path("bench.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        stage.path("bench.md").write_text(f"{title}\n\n{format_markdown(results)}\n")
    print(f"\n{title}\n")
    for name, peak in peaks.items():
        print(f"matmul roofline {name}: {peak.gflops:.0f} GFLOP/s ({peak.backend}, M,K,N={peak.shape})")
    print()
    print(format_table(results))
    print("\nsummary:\n" + "\n".join(summarise(results)))
    plot(output_dir / "bench.png", results, peaks, title)  # last: the numbers are written and printed already
    print(f"\nwrote {output_dir}/bench.json, bench.md, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
