"""The helpers need torch + transformers (+ optional IPEX): notebooks, plots and the Hub paths are extras."""

import logging
import subprocess
import sys
import tomllib
from pathlib import Path

from cpu_inference_helpers.infra import plotting
from cpu_inference_helpers.qa.report import plot_results

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("matplotlib", "jupyterlab", "nbval", "ipywidgets", "datasets", "accelerate")


def test_the_core_dependencies_leave_notebooks_plots_and_the_hub_to_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert not [name for name in EXTRAS_ONLY if name in core]
    extras = " ".join(requirement for extra in project["optional-dependencies"].values() for requirement in extra)
    assert all(name in extras for name in EXTRAS_ONLY)


def test_importing_the_helpers_and_clis_loads_no_extra():
    """(accelerate is left out: transformers imports it by itself wherever it is installed.)"""
    imported_by_us = tuple(name for name in EXTRAS_ONLY if name != "accelerate")
    code = ("import sys\n"
            "import cpu_inference_helpers, cpu_inference_helpers.run_qa, cpu_inference_helpers.training.curve\n"
            "import cpu_inference_helpers.bench.__main__\n"
            f"print(sorted(name for name in {imported_by_us!r} if name in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_without_matplotlib_the_plot_is_skipped_with_the_install_hint(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(plotting, "plotting_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        drawn = plot_results(tmp_path / "comparison.png", [], "title")
    assert drawn is False and not (tmp_path / "comparison.png").exists()
    assert "comparison.png is skipped" in caplog.text and "[plots]" in caplog.text


def test_the_plots_leave_the_users_matplotlib_backend_alone(tmp_path):
    """A user's backend (Jupyter's inline one, MPLBACKEND, matplotlib.use) stays in force after our plots."""
    code = ("import matplotlib\n"
            "matplotlib.use('svg')\n"
            "from cpu_inference_helpers.infra import plotting\n"
            "plt = plotting.pyplot('test.png')\n"
            "figure = plt.figure(); plt.plot([0, 1]); figure.savefig(r'" + str(tmp_path / "plot.png") + "')\n"
            "print(matplotlib.get_backend())\n")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "svg" and (tmp_path / "plot.png").stat().st_size > 0
