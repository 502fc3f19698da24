"""The notebooks as readers meet them: JupyterLab in a real browser (Debian's chromium driven by Playwright).

Each notebook is opened in a throwaway JupyterLab server and run with "Run All Cells" at the test sizes (the
TUTORIAL_* variables of `make test`); then the page must show no error output, every cell run, every plot
rendered as an image and no progress bar left unfinished, and notebook 04's widget button must produce the
comparison table. Screenshots go to results/browser/ for a person to look at.

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


@pytest.mark.parametrize("name", NOTEBOOKS)
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


BROKEN = {
    "cells": [
        {"cell_type": "code", "id": "a1", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import sys\n", "import ipywidgets as widgets\n", "import matplotlib.pyplot as plt\n",
                    "print('stray noise', file=sys.stderr)\n",
                    "plt.plot([1, 2, 3]); plt.show()\n",
                    "display(widgets.VBox([widgets.Button(description='Does nothing'), widgets.Output()]))"]},
        {"cell_type": "code", "id": "a2", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["raise ValueError('broken on purpose')"]},
        {"cell_type": "code", "id": "a3", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["print('never reached')"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


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
