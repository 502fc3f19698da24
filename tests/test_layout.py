"""The package's contract with its importers: importing it configures nothing and imports no IPEX."""

import importlib
import logging
import pkgutil
import subprocess
import sys
from pathlib import Path

import cpu_inference_helpers


def test_importing_every_module_leaves_logging_alone():
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    for module in pkgutil.walk_packages(cpu_inference_helpers.__path__, "cpu_inference_helpers."):
        importlib.import_module(module.name)
    assert (list(root.handlers), root.level) == before


def test_detecting_capabilities_does_not_import_ipex():
    code = ("import sys, cpu_inference_helpers as h; report = h.detect_capabilities(); "
            "print('intel_extension_for_pytorch' in sys.modules, report.ipex)")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["False", "None"]


def test_cli_logging_is_configured_only_by_mains():
    """Only command-line entry points call `configure_cli_logging`, and nothing calls logging.basicConfig itself."""
    package = cpu_inference_helpers.__path__[0]
    for path in Path(package).rglob("*.py"):
        text = path.read_text()
        if path.name != "cli_logging.py":
            assert "logging.basicConfig(" not in text, path
        for line_number, line in enumerate(text.splitlines(), 1):
            if "configure_cli_logging(" in line and not line.lstrip().startswith(("from ", "def ")):
                enclosing = [ln for ln in text.splitlines()[:line_number] if ln.startswith("def ")][-1]
                assert enclosing.startswith(("def main(", "def _bench_shape_here(")), (path, line_number)
