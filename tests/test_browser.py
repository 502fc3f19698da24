"""The notebooks as readers meet them: JupyterLab in a real browser (Debian's chromium driven by Playwright).

Each notebook is opened in a throwaway JupyterLab server and run with "Run All Cells" at the test sizes (the
TUTORIAL_* variables of `make test`); then the page must show no error output, every cell run, every plot
rendered as an image and no progress bar left unfinished, and notebook 04's widget button must produce the
comparison table. Screenshots go to results/browser/ for a person to look at.

TUTORIAL_BROWSER_RUN names the notebooks that run in the browser ("all", the default, or their numbers: "01,04");
the others are opened with the outputs stored in them, which must render as cleanly (what a reader sees before
running anything). `make test` runs 04 in the browser (its widget's button, which nbval cannot click):
every notebook runs under nbval on both stacks already, and a third run of all of them would not fit CI's
90 minutes (docs/notebooks-in-the-browser.md, docs/ci-time.md).

Runs where TUTORIAL_BROWSER_TEST=1 (make test sets it on the legacy stack); without chromium it installs it
with apt when running as root, else it skips with the command to run.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

if os.environ.get("TUTORIAL_BROWSER_TEST") != "1":
    pytest.skip("the browser test runs where TUTORIAL_BROWSER_TEST=1 (make test, legacy stack)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'cpu-inference-tutorial[browser]'")

from jupyterlab_browser import (  # noqa: E402
    CHROMIUM_INSTALL,
    VIEWPORT,
    check_notebook,
    click_button_and_read_output,
    install_chromium_if_root,
    jupyterlab_server,
    shut_down_kernel,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
RESULTS = ROOT / "results" / "browser"
RUN_IN_BROWSER = os.environ.get("TUTORIAL_BROWSER_RUN", "all")


def code_cell_count(path: Path) -> int:
    """How many code cells the notebook file at `path` has."""
    return sum(cell["cell_type"] == "code" for cell in json.loads(path.read_text())["cells"])


def selected_numbers(selection: str) -> set[str]:
    """The comma-separated entries of a TUTORIAL_BROWSER_RUN value ("all" or notebook numbers)."""
    return {part.strip() for part in selection.split(",") if part.strip()}


def runs_in_browser(name: str, selection: str = RUN_IN_BROWSER) -> bool:
    """Whether notebook `name` is run in the browser ("all", or its number among the comma-separated ones)."""
    numbers = selected_numbers(selection)
    return numbers == {"all"} or name.split("_", 1)[0] in numbers


def test_the_selection_names_notebooks_that_exist():
    """A typo in TUTORIAL_BROWSER_RUN would quietly run nothing: every number must be a notebook's."""
    numbers = selected_numbers(RUN_IN_BROWSER) - {"all"}
    assert numbers <= {name.split("_", 1)[0] for name in NOTEBOOKS}, f"TUTORIAL_BROWSER_RUN={RUN_IN_BROWSER!r}"
    assert runs_in_browser("04_run_qa_comparison.ipynb", "01, 04") and not runs_in_browser("05_x.ipynb", "01,04")
    assert runs_in_browser("09_peer_runtimes.ipynb", "all")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on copies of the notebooks (JupyterLab saves what it runs; the originals stay)."""
    chromium = install_chromium_if_root()
    if chromium is None:
        pytest.skip(f"chromium is not installed: run `{CHROMIUM_INSTALL}` (as root) and re-run the tests")
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    env = {"TUTORIAL_OUTPUT_DIR": str(base / "results" / "notebook-qa")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab_server(root, env, RESULTS / "jupyterlab.log") as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield url, root, browser
        finally:
            browser.close()


@pytest.fixture
def page(lab):
    _, _, browser = lab
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    yield page
    context.close()


def _write_report(report) -> None:
    (RESULTS / f"{Path(report.name).stem}.json").write_text(json.dumps(report.__dict__, indent=1) + "\n")


@pytest.mark.parametrize("name", [name for name in NOTEBOOKS if runs_in_browser(name)])
def test_the_notebook_runs_cleanly_in_jupyterlab(lab, page, name):
    url, _, _ = lab
    report = check_notebook(page, url, name, RESULTS)
    if name.startswith("04_"):
        table = click_button_and_read_output(page, "Run comparison", expect="same answers")
        report.widget_output = table
        assert "eager" in table and "F1" in table
    shut_down_kernel(page)
    _write_report(report)
    assert report.problems() == [], f"{name}: {report.problems()} (screenshot: {report.screenshot})"


@pytest.mark.parametrize("name", [name for name in NOTEBOOKS if not runs_in_browser(name)])
def test_the_stored_outputs_render_cleanly_in_jupyterlab(lab, page, name):
    url, _, _ = lab
    report = check_notebook(page, url, name, RESULTS, stored_code_cells=code_cell_count(ROOT / "notebooks" / name))
    shut_down_kernel(page)
    _write_report(report)
    assert report.problems() == [], f"{name}: {report.problems()} (screenshot: {report.screenshot})"


def _notebook(cells: list[dict]) -> dict:
    """A notebook of `cells` for the Python 3 kernel."""
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}}


BROKEN = _notebook([
        {"cell_type": "code", "id": "a1", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import sys\n", "import ipywidgets as widgets\n", "import matplotlib.pyplot as plt\n",
                    "print('stray noise', file=sys.stderr)\n",
                    "plt.plot([1, 2, 3]); plt.show()\n",
                    "display(widgets.VBox([widgets.Button(description='Does nothing'), widgets.Output()]))"]},
        {"cell_type": "code", "id": "a2", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["raise ValueError('broken on purpose')"]},
        {"cell_type": "code", "id": "a3", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["print('never reached')"]},
])


def test_the_check_fails_on_an_error_and_on_a_button_that_does_nothing(lab, page):
    """Broken on purpose: the checks above must see an error, the cells it stopped, and a dead button."""
    url, root, _ = lab
    (root / "zz_broken.ipynb").write_text(json.dumps(BROKEN))
    report = check_notebook(page, url, "zz_broken.ipynb", RESULTS / "broken")
    problems = report.problems()
    assert any("ValueError: broken on purpose" in problem for problem in problems)
    assert any("1 of 3 code cells did not run" in problem for problem in problems)
    assert any("stderr block: stray noise" in problem for problem in problems)
    assert report.images_in_outputs == report.images_rendered == 1
    with pytest.raises(TimeoutError, match="showed no output"):
        click_button_and_read_output(page, "Does nothing", expect="anything", timeout_s=5)
    shut_down_kernel(page)


STORED_BROKEN = _notebook([
        {"cell_type": "code", "id": "b1", "metadata": {}, "execution_count": 1, "source": ["print('ok')"],
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["ok\n"]},
                     {"output_type": "stream", "name": "stderr", "text": ["stray stored noise\n"]}]},
        {"cell_type": "code", "id": "b2", "metadata": {}, "execution_count": 2, "source": ["1 / 0"],
         "outputs": [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                      "traceback": ["ZeroDivisionError: division by zero"]}]},
        {"cell_type": "code", "id": "b3", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["print('never run')"]},
])


def test_the_stored_check_fails_on_a_stored_error_stderr_and_an_unrun_cell(lab, page):
    """Broken on purpose, in its stored outputs: the check of a notebook not run here must see all three."""
    url, root, _ = lab
    (root / "zz_stored_broken.ipynb").write_text(json.dumps(STORED_BROKEN))
    report = check_notebook(page, url, "zz_stored_broken.ipynb", RESULTS / "broken", stored_code_cells=3)
    shut_down_kernel(page)
    problems = report.problems()
    assert any("ZeroDivisionError: division by zero" in problem for problem in problems), problems
    assert any("1 of 3 code cells did not run" in problem for problem in problems), problems
    assert any("stderr block: stray stored noise" in problem for problem in problems), problems
