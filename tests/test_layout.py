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


def test_cli_logging_is_configured_only_by_the_cli_scaffold():
    """Logging is configured in one place, the scaffold's `run` (and the benchmark's worker process, the
    other half of its command line); nothing calls logging.basicConfig but `LogSetup.configure`."""
    package = Path(cpu_inference_helpers.__path__[0])
    allowed = {("infra/cli.py", "    def run("), ("bench/runner.py", "def _bench_shape_here(")}
    configured_in = set()
    for path in package.rglob("*.py"):
        text = path.read_text()
        if path.name != "cli_logging.py":
            assert "logging.basicConfig(" not in text, path
        else:
            continue
        lines = text.splitlines()
        for line_number, line in enumerate(lines, 1):
            if ".configure()" in line:
                enclosing = [ln for ln in lines[:line_number] if ln.lstrip().startswith("def ")][-1]
                where = (path.relative_to(package).as_posix(), enclosing.split("(")[0] + "(")
                assert where in allowed, (path, line_number, line)
                configured_in.add(where)
    assert configured_in == allowed


#: What each part of the package may import from the package (its own part always): the folders are layers.
ALLOWED_IMPORTS = {
    "infra": set(),
    "techniques": {"infra", "core"},
    "core": {"infra", "techniques"},  # modes, record, registry, optimize, deployment, paths/
    "models": {"infra", "techniques", "core"},  # models, shipped_checkpoint
    "qa": {"infra", "techniques", "core", "models"},
    "training": {"infra", "techniques", "core", "models", "qa"},
    "bench": {"infra", "techniques", "core", "models", "qa"},
    "generation": {"infra", "techniques", "core", "models", "qa"},
    "cli": {"infra", "techniques", "core", "models", "qa", "bench", "training"},  # run_qa, __main__, __init__
}
ROOT_PARTS = {"modes": "core", "record": "core", "registry": "core", "optimize": "core", "deployment": "core",
              "bf32_check": "core", "preparation": "core",
              "models": "models",
              "shipped_checkpoint": "models", "run_qa": "cli", "__main__": "cli", "__init__": "cli"}
#: Folders that belong to a layer of another name: `paths/` is the front door's table, split by job.
FOLDER_PARTS = {"paths": "core"}


def _part(module: str) -> str:
    """The layer of a module of the package ("cpu_inference_helpers.qa.data" -> "qa")."""
    name = module.split(".")[1] if "." in module else "__init__"
    return ROOT_PARTS.get(name) or FOLDER_PARTS.get(name, name)


def test_the_folders_are_layers_and_no_module_imports_upwards():
    import ast

    package = Path(cpu_inference_helpers.__path__[0])
    modules = [path for path in package.rglob("*.py") if "__pycache__" not in path.parts]
    assert len([path for path in package.glob("*.py")]) <= len(ROOT_PARTS), "the root is for the front door and CLIs"
    for path in modules:
        relative = path.relative_to(package.parent).with_suffix("")
        own = _part(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cpu_inference_helpers"):
                targets = [node.module] if node.module != "cpu_inference_helpers" else [
                    f"cpu_inference_helpers.{alias.name}" for alias in node.names]
                for target in targets:
                    part = _part(target)
                    assert part == own or part in ALLOWED_IMPORTS[own], f"{relative} ({own}) imports {target} ({part})"
