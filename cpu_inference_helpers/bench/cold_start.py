
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

import datetime
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cpu_inference_helpers.infra.cli import DataclassArgumentParser, UsageError, write_output_files
from cpu_inference_helpers.infra.cli_logging import QUIET
from cpu_inference_helpers.infra.lists import comma_list

logger = logging.getLogger("cpu_inference_helpers.bench.cold_start")

#: How long one fresh process (a row, or building the saved files) may take before it is stopped.
ROW_TIMEOUT_S = 1800.0

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
    """One fresh process: seconds from spawn to each milestone, and its steady `Measurement`'s median after it."""

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


def _fresh_row(settings: ColdStartSettings, files: str, row: str, spawned: float) -> ColdStart:
    """One fresh process (`infra.fresh_process`): time the milestones from the spawn time the parent passed."""
    imports_done = time.time()
    import torch

    from cpu_inference_helpers.deployment import load_prepared
    from cpu_inference_helpers.infra.measurement import Measurement
    from cpu_inference_helpers.infra.timing import interleaved_samples
    from cpu_inference_helpers.models import load_qa_model_and_tokenizer
    from cpu_inference_helpers.modes import ModeSpec
    from cpu_inference_helpers.preparation import prepare_mode

    imports_done = max(imports_done, time.time())
    title, how, what = PYTHON_ROWS[row]
    inputs, _ = _batch(settings.questions, settings.max_seq_length, settings.doc_stride)
    if how == "prepare":
        model = load_qa_model_and_tokenizer(settings.model_name_or_path).model
    loaded = time.time()
    ready = (prepare_mode(model, inputs, ModeSpec(what), warmup_steps=0) if how == "prepare"
             else load_prepared(Path(files) / what))
    prepared = time.time()
    with torch.no_grad():
        ready(**inputs)
    first = time.time()
    record = ready.record
    steady = Measurement(title, record.ran_as, record.precision, [str(step) for step in record.fallbacks],
                         prepared - loaded, interleaved_samples({title: ready}, inputs, warmup=1,
                                                                repeats=settings.repeats)[title],
                         samples=len(inputs["input_ids"]) * settings.repeats)
    return ColdStart(title, steady.ran_as, imports_done - spawned, loaded - imports_done, steady.setup_s,
                     first - prepared, first - spawned, steady.latency.median * 1000)


def _run_fresh_row(settings: ColdStartSettings, files: Path, row: str) -> ColdStart:
    from cpu_inference_helpers.infra.fresh_process import FreshProcessError, run_in_fresh_process

    # a fresh process, not this one's state: only the environment travels (threads: OMP_NUM_THREADS, affinity)
    try:
        return run_in_fresh_process(_fresh_row, settings, str(files), row, time.time(), timeout=ROW_TIMEOUT_S)
    except FreshProcessError as error:
        raise RuntimeError(f"the {row} process failed: {error}") from error


def saved_files_for(rows: list[str]) -> set[str]:
    """The saved files (model.pt, model.pt2) that `rows` load: only those are built."""
    loaded = {what for row, (_, how, what) in PYTHON_ROWS.items() if row in rows and how == "load"}
    return loaded | {file for row, (_, file) in CPP_ROWS.items() if row in rows}


def _build_files(settings: ColdStartSettings, files: Path, needed: set[str]) -> None:
    """The saved TorchScript file and/or AOTInductor package in `needed` (run in a fresh process of its own)."""
    from cpu_inference_helpers.deployment import save_prepared
    from cpu_inference_helpers.models import load_qa_model_and_tokenizer
    from cpu_inference_helpers.optimize import prepare_for_inference

    inputs, _ = _batch(settings.questions, settings.max_seq_length, settings.doc_stride)
    model = load_qa_model_and_tokenizer(settings.model_name_or_path).model
    if "model.pt" in needed:
        save_prepared(prepare_for_inference(model, inputs, mode="jit"), files / "model.pt")
    if "model.pt2" in needed:
        save_prepared(prepare_for_inference(model, inputs, mode="export", package_path=files / "model.pt2"),
                      files / "model.pt2")


def _cpp_rows(settings: ColdStartSettings, files: Path, wanted: list[str]) -> list[ColdStart]:
    from cpu_inference_helpers.deployment import build_deploy_program, deploy_build_problem, run_deploy_program

    problem = deploy_build_problem()
    if problem:
        logger.warning("C++ rows skipped: %s", problem)
        return []
    binary = build_deploy_program()
    inputs, _ = _batch(settings.questions, settings.max_seq_length, settings.doc_stride)
    rows = []
    for row_id, (title, file) in CPP_ROWS.items():
        if row_id not in wanted:
            continue
        # the cold run ends with the first logits (no further calls); a second process measures the steady state
        cold = run_deploy_program(binary, files / file, inputs)
        steady = run_deploy_program(binary, files / file, inputs, repeats=settings.repeats)
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


@dataclass(frozen=True)
class ColdStartSettings:
    """What every row measures: the model, the batch (first `questions` packaged questions), the steady calls."""

    model_name_or_path: str = field(default="minilm-squad", metadata={"help": "the model (default: %(default)s)"})
    questions: int = field(default=8, metadata={"help": "packaged questions in the batch (%(default)s)"})
    max_seq_length: int = field(default=384, metadata={"help": "tokens per window (default: %(default)s)"})
    doc_stride: int = field(default=128, metadata={"help": "overlap of a long context's windows (%(default)s)"})
    repeats: int = field(default=10, metadata={"help": "steady-state calls per process (%(default)s)"})


ALL_ROWS = (*PYTHON_ROWS, *CPP_ROWS)


def measure_cold_start(settings: ColdStartSettings, work_dir: str | Path, rows: list[str] | None = None,
                       progress: bool = False) -> list[ColdStart]:
    """Build the files the rows load in `work_dir`, then time each row (default: all) in a fresh process, in order.

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
    needed = saved_files_for(wanted)
    from cpu_inference_helpers.infra.fresh_process import FreshProcessError, run_in_fresh_process

    if needed:  # in a process of its own, as a deployment builds them: this one stays as cold as it was
        logger.info("building %s in %s", " and ".join(sorted(needed)), files)
        try:
            run_in_fresh_process(_build_files, settings, files, needed, timeout=ROW_TIMEOUT_S)
        except FreshProcessError as error:
            raise RuntimeError(f"building the saved files failed: {error}") from error
    results = []
    python_rows = [row for row in wanted if row in PYTHON_ROWS]
    for row in tqdm(python_rows, desc="fresh processes", disable=not progress):
        results.append(_run_fresh_row(settings, files, row))
    if any(row in CPP_ROWS for row in wanted):
        results += _cpp_rows(settings, files, wanted)
    return results


def describe_setting(settings: ColdStartSettings) -> str:
    """One line: the model, batch, CPU, threads, torch and date the rows were measured with."""
    import torch

    from cpu_inference_helpers.techniques.capabilities import cached_capabilities

    cpu = cached_capabilities()
    return (f"cold start, {settings.model_name_or_path}, {settings.questions} questions at seq "
            f"{settings.max_seq_length} (stride {settings.doc_stride}); {cpu.model_name}, {cpu.torch_threads} threads, "
            f"torch {torch.__version__}; {datetime.date.today().isoformat()}")


@dataclass
class ColdStartFlags:
    """The command line's own flags: which rows, and where the files go."""

    rows: str | None = field(default=None, metadata={
        "help": f"comma-separated rows (default: all): {', '.join((*PYTHON_ROWS, *CPP_ROWS))}"})
    output_dir: str = field(default="results/cold-start", metadata={"help": "output folder (default: %(default)s)"})


def build_parser() -> DataclassArgumentParser:
    """The command line's flags, generated from `ColdStartSettings` and `ColdStartFlags`."""
    return DataclassArgumentParser(ColdStartSettings, ColdStartFlags,
                                   prog="python -m cpu_inference_helpers.bench.cold_start", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run every row in a fresh process, print the table, write cold-start.json and .md."""
    parser = build_parser()
    settings, flags = parser.parse_dataclasses(argv)
    output = Path(flags.output_dir)

    def measure_and_write() -> None:
        try:
            rows = measure_cold_start(settings, output, comma_list(flags.rows) if flags.rows else None, progress=True)
        except ValueError as error:  # an unknown row or a setting below 1, found before any work
            raise UsageError(str(error)) from error
        header, table = describe_setting(settings), format_table(rows)
        print(header + "\n\n" + table)
        write_output_files(output, {  # both files or neither
            "cold-start.json": json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=2) + "\n",
            "cold-start.md": header + "\n\n" + table + "\n"})

    return parser.run(measure_and_write, log=QUIET)


if __name__ == "__main__":
    sys.exit(main())
