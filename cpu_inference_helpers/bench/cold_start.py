
"""Cold start: a fresh process, from its start to the first batch's logits, per mode; steady latency beside it.

    python -m cpu_inference_helpers.bench.cold_start [--questions 8] [--max_seq_length 384] [--output_dir ...]

Each row is one fresh Python process (or the C++ program) timed from spawn by the parent: interpreter
start and imports, loading the model (or only the tokenizer, for a saved file), preparing it (nothing,
trace, compile, export) or loading the saved file, then the first batch (the windows of the first
`--questions` packaged SQuAD questions); then the median of `--repeats` further calls of the same
batch. The saved files (a TorchScript file and an AOTInductor package) are built once beforehand, in
a process of their own, as a deployment would build them. Rows are measured one after the other on a
shared machine: compare them within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger("cpu_inference_helpers.bench.cold_start")

#: Python rows: id -> (what the table calls it, how the process gets its model, the mode or the saved file).
PYTHON_ROWS = {
    "eager": ("eager", "prepare", "eager"),
    "jit": ("jit", "prepare", "jit"),
    "ipex+jit": ("ipex+jit", "prepare", "ipex+jit"),
    "compile": ("compile", "prepare", "compile"),
    "export": ("export", "prepare", "export"),
    "jit-saved": ("jit (load saved .pt)", "load", "model.pt"),
    "export-saved": ("export (load saved .pt2)", "load", "model.pt2"),
}
#: C++ rows: id -> (what the table calls it, the saved file the program loads).
CPP_ROWS = {"cpp-jit": ("C++ TorchScript (.pt)", "model.pt"), "cpp-export": ("C++ AOTInductor (.pt2)", "model.pt2")}


@dataclass
class ColdStart:
    """One fresh process: seconds from spawn to each milestone, and the steady-state median after it."""

    row: str
    ran_as: str
    imports_s: float  # interpreter start + imports (torch, transformers, the helpers)
    load_s: float  # model + tokenizer (tokenizer only for a saved file)
    prepare_s: float  # prepare_for_inference, or load_prepared
    first_batch_s: float  # the first batch's logits
    total_s: float  # spawn -> first batch's logits
    steady_ms: float  # median latency of the next calls
    note: str = ""


def _batch(questions: int, max_seq_length: int, doc_stride: int):  # noqa: ANN202 - torch imported lazily
    from cpu_inference_helpers.models import load_offline_tokenizer
    from cpu_inference_helpers.qa import load_examples, prepare_validation_features

    tokenizer = load_offline_tokenizer()
    examples = load_examples()[0][:questions]
    features = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride)
    return features.inputs, tokenizer


def _child(args: argparse.Namespace) -> int:
    """One fresh process: time the milestones from the spawn time the parent passed."""
    imports_done = time.time()
    import torch

    from cpu_inference_helpers.deployment import load_prepared
    from cpu_inference_helpers.infra.timing import measure_latency
    from cpu_inference_helpers.models import load_qa_model_and_tokenizer
    from cpu_inference_helpers.modes import ModeSpec
    from cpu_inference_helpers.preparation import prepare_mode

    imports_done = max(imports_done, time.time())
    title, how, what = PYTHON_ROWS[args.child]
    inputs, _ = _batch(args.questions, args.max_seq_length, args.doc_stride)
    if how == "prepare":
        model = load_qa_model_and_tokenizer(args.model_name_or_path).model
    loaded = time.time()
    ready = (prepare_mode(model, inputs, ModeSpec(what), warmup_steps=0) if how == "prepare"
             else load_prepared(Path(args.files) / what))
    prepared = time.time()
    with torch.no_grad():
        ready(**inputs)
    first = time.time()
    steady = measure_latency(ready, inputs, warmup=1, repeats=args.repeats)
    result = ColdStart(title, ready.record.ran_as, imports_done - args.spawned, loaded - imports_done,
                       prepared - loaded, first - prepared, first - args.spawned, steady.median * 1000)
    print(json.dumps(asdict(result)))
    return 0


def _run_child(args: argparse.Namespace, row: str) -> ColdStart:
    command = [sys.executable, "-m", "cpu_inference_helpers.bench.cold_start", "--child", row,
               "--spawned", repr(time.time()), *_shared_flags(args)]
    # a fresh process, not this one's state: only the environment travels (threads: OMP_NUM_THREADS, affinity)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the {row} process failed: {result.stderr.strip()[-2000:]}")
    return ColdStart(**json.loads(result.stdout.strip().splitlines()[-1]))


def _shared_flags(args: argparse.Namespace) -> list[str]:
    return ["--model_name_or_path", args.model_name_or_path, "--questions", str(args.questions),
            "--max_seq_length", str(args.max_seq_length), "--doc_stride", str(args.doc_stride),
            "--repeats", str(args.repeats), "--files", str(args.files)]


def _build_files(args: argparse.Namespace) -> None:
    """The saved TorchScript file and AOTInductor package, built in this (parent) process."""
    from cpu_inference_helpers.deployment import save_prepared
    from cpu_inference_helpers.models import load_qa_model_and_tokenizer
    from cpu_inference_helpers.optimize import prepare_for_inference

    inputs, _ = _batch(args.questions, args.max_seq_length, args.doc_stride)
    model = load_qa_model_and_tokenizer(args.model_name_or_path).model
    files = Path(args.files)
    save_prepared(prepare_for_inference(model, inputs, mode="jit"), files / "model.pt")
    save_prepared(prepare_for_inference(model, inputs, mode="export", package_path=files / "model.pt2"),
                  files / "model.pt2")


def _cpp_rows(args: argparse.Namespace, wanted: list[str]) -> list[ColdStart]:
    from cpu_inference_helpers.deployment import build_deploy_program, deploy_build_problem, run_deploy_program

    problem = deploy_build_problem()
    if problem:
        logger.warning("C++ rows skipped: %s", problem)
        return []
    binary = build_deploy_program()
    inputs, _ = _batch(args.questions, args.max_seq_length, args.doc_stride)
    rows = []
    for row_id, (title, file) in CPP_ROWS.items():
        if row_id not in wanted:
            continue
        # the cold run ends with the first logits (no further calls); a second process measures the steady state
        cold = run_deploy_program(binary, Path(args.files) / file, inputs)
        steady = run_deploy_program(binary, Path(args.files) / file, inputs, repeats=args.repeats)
        startup = cold.process_seconds - cold.main_seconds  # exec, libtorch's loading before main, and exit
        rows.append(ColdStart(title, "jit" if file.endswith(".pt") else "export", startup, 0.0, cold.load_seconds,
                              cold.first_call_seconds, cold.process_seconds, steady.steady_median_seconds * 1000,
                              "no Python; tokens written by Python beforehand"))
    return rows


def format_table(rows: list[ColdStart]) -> str:
    """A Markdown table of the rows (the time from spawn to the first logits in bold)."""
    from cpu_inference_helpers.infra.tables import markdown_table  # here: the module imports nothing of ours up top

    header = ["process", "runs as", "imports s", "load s", "prepare / load file s", "first batch s",
              "spawn to first logits s", "steady ms"]
    return markdown_table(header, [[row.row, row.ran_as, f"{row.imports_s:.2f}", f"{row.load_s:.2f}",
                                    f"{row.prepare_s:.2f}", f"{row.first_batch_s:.2f}", f"**{row.total_s:.2f}**",
                                    f"{row.steady_ms:.0f}"] for row in rows])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cpu_inference_helpers.bench.cold_start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model_name_or_path", default="minilm-squad")
    parser.add_argument("--questions", type=int, default=8, help="packaged questions in the batch (%(default)s)")
    parser.add_argument("--max_seq_length", type=int, default=384)
    parser.add_argument("--doc_stride", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10, help="steady-state calls per process (%(default)s)")
    parser.add_argument("--rows", help=f"comma-separated rows (default: all): {', '.join([*PYTHON_ROWS, *CPP_ROWS])}")
    parser.add_argument("--output_dir", default="results/cold-start")
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=list(PYTHON_ROWS), help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    return parser


@dataclass(frozen=True)
class ColdStartSettings:
    """What every row measures: the model, the batch (first `questions` packaged questions), the steady calls."""

    model_name_or_path: str = "minilm-squad"
    questions: int = 8
    max_seq_length: int = 384
    doc_stride: int = 128
    repeats: int = 10


ALL_ROWS = (*PYTHON_ROWS, *CPP_ROWS)


def measure_cold_start(settings: ColdStartSettings, work_dir: str | Path, rows: list[str] | None = None,
                       progress: bool = False) -> list[ColdStart]:
    """Build the saved files in `work_dir`, then time each row (default: all) in a fresh process, in order.

    Raises ValueError for an unknown row or a setting below 1, before any work.
    """
    wanted = list(rows) if rows else list(ALL_ROWS)
    unknown = [name for name in wanted if name not in ALL_ROWS]
    if unknown:
        raise ValueError(f"unknown cold-start row(s) {', '.join(unknown)}: choose from {', '.join(ALL_ROWS)}")
    if settings.questions < 1 or settings.repeats < 1:
        raise ValueError("questions and repeats must be at least 1")
    from tqdm.auto import tqdm

    files = Path(work_dir) / "files"
    files.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(**asdict(settings), files=str(files))
    logger.info("building the saved TorchScript file and AOTInductor package in %s", files)
    _build_files(args)
    results = []
    python_rows = [row for row in wanted if row in PYTHON_ROWS]
    for row in tqdm(python_rows, desc="fresh processes", disable=not progress):
        results.append(_run_child(args, row))
    if any(row in CPP_ROWS for row in wanted):
        results += _cpp_rows(args, wanted)
    return results


def describe_setting(settings: ColdStartSettings) -> str:
    """One line: the model, batch, CPU, threads, torch and date the rows were measured with."""
    import torch

    from cpu_inference_helpers.techniques.capabilities import cached_capabilities

    cpu = cached_capabilities()
    return (f"cold start, {settings.model_name_or_path}, {settings.questions} questions at seq "
            f"{settings.max_seq_length} (stride {settings.doc_stride}); {cpu.model_name}, {cpu.torch_threads} threads, "
            f"torch {torch.__version__}; {datetime.date.today().isoformat()}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run every row in a fresh process, print the table, write cold-start.json and .md."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    from cpu_inference_helpers.infra.cli_logging import configure_cli_logging

    configure_cli_logging()
    settings = ColdStartSettings(args.model_name_or_path, args.questions, args.max_seq_length, args.doc_stride,
                                 args.repeats)
    output = Path(args.output_dir)
    try:
        from cpu_inference_helpers.infra.lists import comma_list

        rows = measure_cold_start(settings, output, comma_list(args.rows)
                                  if args.rows else None, progress=True)
    except ValueError as error:
        parser.error(str(error))
    header, table = describe_setting(settings), format_table(rows)
    print(header + "\n\n" + table)
    from cpu_inference_helpers.infra.output_files import staged_outputs

    with staged_outputs(output) as stage:  # both files or neither
        stage.path("cold-start.json").write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]},
                                                            indent=2) + "\n")
        stage.path("cold-start.md").write_text(header + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
