"""Re-execute the tutorial notebooks in place at full size and keep their stored outputs clean.

    .venv/bin/python scripts/execute_notebooks.py [notebooks/02_ipex_graph_fusion.ipynb ...]

Runs each notebook top to bottom in the current environment (the legacy stack is where the
stored outputs come from), with the TUTORIAL_* size variables unset so JupyterLab's defaults
apply, then drops stored widget state. tests/test_notebook_outputs.py checks the result.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def drop_progress_bars(notebook: nbformat.NotebookNode) -> None:
    """Remove widget views from the outputs: their state is not stored, so JupyterLab and GitHub would show
    tqdm's bars frozen at 0% and an interactive widget (notebook 04's mode picker) as its raw `VBox(...)`
    repr. Run the cell and the widget appears."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [output for output in cell.outputs
                        if "application/vnd.jupyter.widget-view+json" not in output.get("data", {})
                        and not _is_empty_display(output)]


def merge_streams(notebook: nbformat.NotebookNode) -> None:
    """Join consecutive stdout (or stderr) chunks of a cell into one output, as JupyterLab shows them: where a
    print is cut into chunks depends on timing, so chunks would make the stored file differ from run to run."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        merged: list[nbformat.NotebookNode] = []
        for output in cell.outputs:
            previous = merged[-1] if merged else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
                previous["text"] = "".join(previous["text"]) + "".join(output["text"])
            else:
                merged.append(output)
        cell.outputs = merged


def _is_empty_display(output: nbformat.NotebookNode) -> bool:
    """A display with no text, such as what rich leaves behind its live progress widget (NNCF's, notebook 09)."""
    data = output.get("data", {})
    return output.get("output_type") == "display_data" and "text/plain" in data and not data["text/plain"].strip() \
        and not any(key.startswith("image/") for key in data)


def clean(notebook: nbformat.NotebookNode) -> None:
    """What every stored notebook goes through: no widget views or empty displays, one output per stream run."""
    drop_progress_bars(notebook)
    merge_streams(notebook)


def execute(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    ExecutePreprocessor(timeout=3600, kernel_name="python3", store_widget_state=True).preprocess(
        notebook, {"metadata": {"path": str(path.parent)}}
    )
    # Widget state is collected while running (rich's live progress widgets, e.g. NNCF's, need it) and then
    # dropped with the widget views: it would only show frozen widgets.
    notebook.metadata.pop("widgets", None)
    clean(notebook)
    nbformat.write(notebook, path)
    print(f"executed {path.name}")


def main(paths: list[str]) -> None:
    if paths[:1] == ["--clean-only"]:  # drop stored progress bars without re-executing
        for path in [Path(p) for p in paths[1:]] or sorted(NOTEBOOK_DIR.glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            clean(notebook)
            nbformat.write(notebook, path)
        return
    for name in [key for key in os.environ if key.startswith("TUTORIAL_")]:
        del os.environ[name]
    for path in [Path(p) for p in paths] or sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        execute(path.resolve())


if __name__ == "__main__":
    main(sys.argv[1:])
