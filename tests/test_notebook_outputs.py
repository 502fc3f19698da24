"""The stored notebook outputs are clean and their strictly compared cells cannot depend on the CPU."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
FORBIDDEN = {
    "C++ kernel-override warning": re.compile(r"OperatorEntry\.cpp|Overriding a previously registered kernel"),
    "CUDA_HOME line": re.compile(r"CUDA_HOME"),
    "C++ log line (e.g. the profiler's gpuGetDeviceCount error)": re.compile(
        r"^(ERROR|WARNING):\d{4}-\d\d-\d\d |^[EW]\d{4} \d\d:\d\d:", re.MULTILINE),
    # Ray's and Ray Data's console log lines ("2026-12-04 21:57:05,072\tINFO streaming_executor.py:215 -- ...")
    "Ray log line": re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARNING)\b", re.MULTILINE),
    "Ray session folder": re.compile(r"/tmp/ray/session_"),
    "a log line formatted by some library's logging.basicConfig (the library must not configure logging)": re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ - [\w.]+ - (DEBUG|INFO|WARNING) - ", re.MULTILINE),
    "transformers loss-type chatter": re.compile(r"loss_type=None"),
    # (the guide's example commands write to /tmp/qa: that is an example, not this machine's path)
    "machine path": re.compile(r"/(root|home|work)/|/tmp/(tmp|pytest-)|site-packages"),
    # a tqdm bar stored at the moment it was created (its widget state is not stored): "0%|   | 0/65"
    "unfinished progress bar": re.compile(r"\b\d{1,2}%\|.*\| *\d+/\d+"),
    "raw widget repr (its state is not stored)": re.compile(r"\b(VBox|HBox|IntProgress)\(children="),
}
#: Words that only a vendor-, ISA- or kernel-dependent fact prints; a strict cell must not print them.
#: (A cell may name another CPU it describes, like notebook 03's stored Skylake /proc/cpuinfo.)
CPU_DEPENDENT = re.compile(
    r"AuthenticAMD|GenuineIntel|EPYC|AMX (yes|no)|amx_\w+=|native bf16:|IPEX usable|mkl_sgemm|GFLOP|\d ms\b"
)

pytestmark = pytest.mark.stack_independent  # run on the legacy stack only (pyproject's markers)


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def output_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_carry_no_warnings_paths_or_widget_state(path):
    notebook = json.loads(path.read_text())
    assert "widgets" not in notebook["metadata"]
    for index, cell in enumerate(notebook["cells"]):
        text = output_text(cell)
        for what, pattern in FORBIDDEN.items():
            assert not pattern.search(text), f"{path.name} cell {index}: {what}: {pattern.search(text).group(0)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_strict_cells_print_nothing_that_depends_on_the_cpu(path):
    for index, cell in enumerate(cells(path)):
        if cell["cell_type"] != "code" or "nbval-ignore-output" in tags(cell):
            continue
        text = output_text(cell)
        assert not CPU_DEPENDENT.search(text), f"{path.name} cell {index} prints {CPU_DEPENDENT.search(text)[0]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_compares_something_on_every_stack(path):
    """--nbval-lax (the modern stack) compares only cells tagged nbval-check-output."""
    marked = [cell for cell in cells(path) if "nbval-check-output" in tags(cell)]
    assert marked and all(cell.get("outputs") for cell in marked)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nbval_markers_are_cell_tags_not_comments_in_the_readers_code(path):
    """nbval reads its markers from cell tags; a `# NBVAL_...` line would be copied by every reader."""
    for index, cell in enumerate(cells(path)):
        source = "".join(cell["source"])
        assert "NBVAL" not in source, f"{path.name} cell {index} carries an nbval comment: use a cell tag"
        unknown = [tag for tag in tags(cell) if tag.startswith("nbval") and tag not in
                   ("nbval-ignore-output", "nbval-check-output", "nbval-skip", "nbval-raises-exception")]
        assert not unknown, f"{path.name} cell {index}: unknown nbval tag(s) {unknown}"
        assert not ({"nbval-ignore-output", "nbval-check-output"} <= set(tags(cell))), f"{path.name} cell {index}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_cells_printed_text_is_stored_as_one_stream_per_name(path):
    """Where a print was cut into chunks depends on timing: chunks stored apart make every re-execution a diff
    (scripts/execute_notebooks.py joins them, as JupyterLab shows them)."""
    chunked = []
    for number, cell in enumerate(cells(path)):
        outputs = cell.get("outputs", [])
        for previous, output in zip(outputs, outputs[1:], strict=False):
            if previous.get("output_type") == output.get("output_type") == "stream" \
                    and previous.get("name") == output.get("name"):
                chunked.append(number)
                break
    assert chunked == [], f"cells {chunked} store a stream in chunks: scripts/execute_notebooks.py --clean-only"
