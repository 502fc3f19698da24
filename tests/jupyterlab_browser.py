"""Drive JupyterLab in a real browser: start a throwaway server, open a notebook, run it, read what a reader sees.

The server is configured as JupyterLab's own UI-test framework (Galata, `jupyterlab.galata.
configure_jupyter_server`) does it: no token or password, no XSRF check, a temporary root, workspace
and settings folder, and the app exposed as `window.jupyterapp` so the page can be asked for the
notebook model and the kernel's status. Notebook windowing is off (every cell in the page), so that
every output can be checked. The browser is Debian's chromium, driven by Playwright for Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpu_inference_helpers.techniques.capabilities import CpuCapabilities, cached_capabilities

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_INSTALL = "apt-get install -y chromium"
VIEWPORT = {"width": 1366, "height": 900}  # a laptop's window


def chromium_path() -> str | None:
    """Debian's chromium, if installed (Playwright's own browser download is not reachable here)."""
    return next((path for path in CHROMIUM_CANDIDATES if os.path.exists(path)), None)


def install_chromium_if_root() -> str | None:
    """Install Debian's chromium with apt when running as root and it is missing; its path, or None."""
    path = chromium_path()
    if path or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                                    "chromium"]):
        if subprocess.run(command, capture_output=True, timeout=900).returncode != 0:
            return None
    return chromium_path()


def _free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@contextlib.contextmanager
def jupyterlab_server(root_dir: Path, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """A JupyterLab server on a free local port serving `root_dir` (Galata's test settings); yields its URL."""
    port = _free_port()
    settings = root_dir.parent / "lab-settings"
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},  # every cell in the page
                           "apputils-extension/notification": {"fetchNews": "false"}}.items():  # no news pop-up
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1", "--allow-root", f"--ServerApp.root_dir={root_dir}", "--IdentityProvider.token=",
        "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True", "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={root_dir.parent / 'workspaces'}",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"JupyterLab did not start; see {log_path}") from None
                    time.sleep(0.5)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


@dataclass
class NotebookReport:
    """What a reader would see after running every cell of one notebook in JupyterLab."""

    name: str
    seconds: float
    cells_run: int = 0
    code_cells: int = 0
    errors: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)  # stderr blocks in cells not marked STDERR_ON_PURPOSE
    #: stderr blocks made only of logged fallbacks that this CPU's missing instructions explain (not problems)
    stderr_explained_by_cpu: list[str] = field(default_factory=list)
    images_in_outputs: int = 0
    images_rendered: int = 0
    widgets_in_outputs: int = 0
    widgets_rendered: int = 0  # fewer: JupyterLab fell back to the widget's text repr (no widget manager)
    unfinished_progress_bars: int = 0
    wrapped_lines: list[str] = field(default_factory=list)
    screenshot: str = ""

    def problems(self) -> list[str]:
        """Everything that would make a reader stop: errors, cells not run, plots not shown, bars left running."""
        found = [f"error output: {error}" for error in self.errors]
        if self.cells_run != self.code_cells:
            found.append(f"{self.code_cells - self.cells_run} of {self.code_cells} code cells did not run")
        if self.images_rendered != self.images_in_outputs:
            found.append(f"{self.images_in_outputs} plots in the outputs, {self.images_rendered} rendered")
        if self.widgets_rendered != self.widgets_in_outputs:
            found.append(f"{self.widgets_in_outputs} widgets in the outputs, {self.widgets_rendered} rendered as such")
        if self.unfinished_progress_bars:
            found.append(f"{self.unfinished_progress_bars} progress bars never reached their end")
        found += [f"stderr block: {text}" for text in self.stderr]
        return found


_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const prompts = Array.from(panel.node.querySelectorAll('.jp-InputPrompt')).map(p => p.textContent);
  const outputs = cells.flatMap(c => c.model.outputs.toJSON());
  return {
    kernel: kernel ? kernel.status : 'none',
    running: prompts.filter(t => t.includes('*')).length,
    code_cells: cells.length,
    cells_run: cells.filter(c => c.model.executionCount !== null).length,
    errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
    images: outputs.filter(o => o.data && o.data['image/png']).length,
    widgets: outputs.filter(o => o.data && o.data['application/vnd.jupyter.widget-view+json']).length,
  };
}"""

#: Logged fallbacks that a CPU without some instructions gives on purpose, each with the test of that lack: on
#: such a CPU a reader sees them and they say why (e.g. an AVX2-only AMD EPYC: no native bf16, and IPEX's bf16
#: kernels need AVX-512 BW/VL/DQ or AVX-NE-CONVERT). On a CPU that has the instructions they are problems.
CPU_EXPLAINED_FALLBACKS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"bf16 requested but this CPU \(.+\) has no native bf16 instructions"),
     lambda caps: not caps.native_bf16),
    (re.compile(r"IPEX not applied, using the native PyTorch path: ipex\.optimize failed with AssertionError: "
                r"BF16 weight prepack needs the cpu support"), lambda caps: not caps.onednn_bf16_usable),
    (re.compile(r"failed to use PyTorch jit mode due to: RuntimeError: a TorchScript graph failed in ipex::\w+: "
                r"RuntimeError: could not create a primitive descriptor"), lambda caps: not caps.onednn_bf16_usable),
)


def explained_by_cpu(block: str, capabilities: CpuCapabilities) -> bool:
    """Whether every line of a stderr block is a logged fallback that this CPU's missing instructions explain."""
    lines = [line for line in block.splitlines() if line.strip()]
    return bool(lines) and all(
        any(pattern.match(line) and lacks(capabilities) for pattern, lacks in CPU_EXPLAINED_FALLBACKS)
        for line in lines)


#: The comment that marks a cell whose stderr output is the lesson (a logged fallback, shown on purpose).
STDERR_ON_PURPOSE = "logs its fallback as a warning on purpose"

_RENDERED_JS = """() => {
  const STDERR_ON_PURPOSE = '""" + STDERR_ON_PURPOSE + """';
  const panel = window.jupyterapp.shell.currentWidget;
  const images = Array.from(panel.node.querySelectorAll('.jp-OutputArea-output img'));
  const stderr = panel.content.widgets
    .filter(cell => !cell.model.sharedModel.getSource().includes(STDERR_ON_PURPOSE))
    .flatMap(cell => Array.from(cell.node.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')));
  const bars = Array.from(panel.node.querySelectorAll('.widget-progress, .widget-hprogress'));
  const unfinished = bars.filter(bar => {
    const fill = bar.querySelector('.progress-bar');
    return fill && parseFloat(fill.style.width || '0') < 99.9;
  });
  const wrapped = Array.from(panel.node.querySelectorAll('.jp-OutputArea-output pre')).flatMap(pre => {
    const width = pre.clientWidth;
    const probe = document.createElement('span');
    probe.textContent = 'x'.repeat(100);
    pre.appendChild(probe);
    const perChar = probe.getBoundingClientRect().width / 100;
    probe.remove();
    const fits = Math.floor(width / perChar);
    return pre.textContent.split('\\n').filter(line => line.length > fits).map(line => line.slice(0, 60) + '...');
  });
  // a widget view is a panel without a MIME type; a widget the page could not render shows its text/plain repr
  const widgets = panel.node.querySelectorAll('.jp-OutputArea-output:not([data-mime-type])');
  return {
    rendered: images.filter(img => img.complete && img.naturalWidth > 0).length,
    widgets: widgets.length,
    stderr: stderr.map(node => node.textContent.slice(0, 4000)),
    unfinished: unfinished.length,
    wrapped: wrapped,
  };
}"""


def _state(page: Any) -> dict[str, Any] | None:
    return page.evaluate(_STATE_JS)


def open_notebook(page: Any, base_url: str, name: str, timeout_s: float = 120) -> None:
    """Open `name` in JupyterLab and wait until it is the current widget and its kernel is idle.

    JupyterLab restores the notebooks its workspace had open before it opens `name`, so for a moment the
    current widget can be another notebook. A full run of the browser tests (2026-12-07) once had the stored
    check report "3 of 3 code cells did not run" for zz_stored_broken.ipynb (two of its three cells ran): the
    file of the test before it, zz_broken.ipynb, has exactly three unrun code cells. Not reproduced by running
    the two tests alone; the check below makes reading another notebook impossible either way.
    """
    page.goto(f"{base_url}/lab/tree/{name}")
    page.wait_for_function("""(name) => {
      const current = window.jupyterapp && window.jupyterapp.shell.currentWidget;
      return current && current.context && current.context.path.split('/').pop() === name;
    }""", arg=name, timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while (state := _state(page)) is None or state["kernel"] != "idle":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: the kernel did not become idle ({state})")
        time.sleep(0.5)


def run_all_cells(page: Any, name: str, timeout_s: float) -> dict[str, Any]:
    """Run every cell (JupyterLab's 'Run All Cells') and wait until none is queued or running."""
    page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.ready; }")
    # the widget manager registers with the kernel after the session is ready: widgets displayed before
    # that render as their text repr ("VBox(children=...)")
    page.wait_for_load_state("networkidle")
    time.sleep(3)
    for _ in range(3):  # a command sent while the kernel is still connecting can be dropped: see it start
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        started = time.monotonic() + 30
        while time.monotonic() < started:
            state = _state(page)
            if state["running"] or state["cells_run"] or state["kernel"] == "busy":
                break
            time.sleep(0.5)
        else:
            continue
        break
    else:
        raise TimeoutError(f"{name}: 'Run All Cells' started nothing ({_state(page)})")
    deadline, quiet_polls = time.monotonic() + timeout_s, 0
    while True:
        state = _state(page)
        quiet_polls = quiet_polls + 1 if state["kernel"] == "idle" and state["running"] == 0 else 0
        if quiet_polls >= 3:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: still running after {timeout_s:.0f} s ({state})")
        time.sleep(1)


def screenshot_notebook(page: Any, path: Path) -> None:
    """The whole notebook in one image: the window made as tall as the notebook, then put back."""
    height = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.node"
                           ".querySelector('.jp-WindowedPanel-inner').scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 200, 30000)})
    page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.node"
                  ".querySelector('.jp-WindowedPanel-outer').scrollTop = 0; }")
    page.wait_for_timeout(1000)
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)


def wait_for_all_cells(page: Any, name: str, code_cells: int, timeout_s: float = 60) -> dict[str, Any]:
    """The page's state once it shows all `code_cells` code cells of `name` (JupyterLab adds them as it loads)."""
    page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.context.ready; }")
    deadline = time.monotonic() + timeout_s
    while (state := _state(page))["code_cells"] < code_cells:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: the page shows {state['code_cells']} of its {code_cells} code cells")
        time.sleep(0.5)
    return state


def check_notebook(page: Any, base_url: str, name: str, screenshot_dir: Path, timeout_s: float = 900,
                   stored_code_cells: int | None = None) -> NotebookReport:
    """Open `name`, run all its cells, wait for its plots, and report what the page shows. With
    `stored_code_cells` (the number of code cells in the file) nothing runs: the stored outputs are checked."""
    started = time.monotonic()
    run = stored_code_cells is None
    open_notebook(page, base_url, name)
    state = run_all_cells(page, name, timeout_s) if run else wait_for_all_cells(page, name, stored_code_cells)
    report = NotebookReport(name, 0.0, state["cells_run"], state["code_cells"], state["errors"],
                            images_in_outputs=state["images"], widgets_in_outputs=state["widgets"])
    deadline = time.monotonic() + 30
    while (rendered := page.evaluate(_RENDERED_JS))["rendered"] < report.images_in_outputs:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    report.images_rendered = rendered["rendered"]
    report.widgets_rendered = rendered["widgets"]
    capabilities = cached_capabilities()
    for block in rendered["stderr"]:
        # stored outputs come from the machine named in the notebook, not this CPU: nothing explains them here
        explained = run and explained_by_cpu(block, capabilities)
        (report.stderr_explained_by_cpu if explained else report.stderr).append(block[:300])
    report.unfinished_progress_bars = rendered["unfinished"]
    report.wrapped_lines = rendered["wrapped"]
    report.seconds = time.monotonic() - started
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    report.screenshot = str(screenshot_dir / f"{Path(name).stem}.png")
    screenshot_notebook(page, Path(report.screenshot))
    return report


def shut_down_kernel(page: Any) -> None:
    """Shut the current notebook's kernel down: the next notebooks need its memory (a model, compiled code)."""
    page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.shutdown(); }")


def click_button_and_read_output(page: Any, label: str, expect: str, timeout_s: float = 180) -> str:
    """Click the widget button labelled `label` and return the text that appears in the output below it."""
    button = page.get_by_role("button", name=label)
    button.scroll_into_view_if_needed()
    before = _widget_text(page)
    button.click()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = _widget_text(page)
        if text != before and expect in text and _state(page)["kernel"] == "idle":
            return text
        time.sleep(1)
    raise TimeoutError(f"clicking {label!r} showed no output containing {expect!r} within {timeout_s:.0f} s")


def _widget_text(page: Any) -> str:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.widget-output')).map(n => n.innerText).join('\\n')")
