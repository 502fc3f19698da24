"""Saving what was prepared, loading it in a fresh process, and running it from C++ with no Python.

    save_prepared(ready, "qa-model.pt2")          # mode export: the AOTInductor package (+ .json record)
    save_prepared(ready, "qa-model.pt")           # modes jit, ipex+jit: the traced, frozen TorchScript file
    ready = load_prepared("qa-model.pt2")         # in a fresh process: no export, trace or compile

The C++ program `deploy/qa_logits.cpp` loads either file with libtorch (the torch wheel's own headers
and libraries, built by `build_deploy_program` with the system compiler) and turns a file of token ids
(`write_token_ids`) into a file of logits (`read_logits`).

Loading an IPEX-optimised TorchScript graph (mode ipex+jit) needs IPEX's operators registered: in Python
`import intel_extension_for_pytorch` before `torch.jit.load` (`load_prepared` does it), in C++ linking
`libintel-ext-pt-cpu.so` from the IPEX wheel. Plain jit graphs and export packages need only libtorch.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.optimize import InferenceModel
from cpu_inference_helpers.record import OptimizationRecord, Step
from cpu_inference_helpers.techniques.deprecations import TORCHSCRIPT_DEPRECATION
from cpu_inference_helpers.techniques.exporting import PACKAGE_SUFFIX, PackagedModel, load_package

logger = logging.getLogger(__name__)

#: The C++ source of the deployment program, shipped in the repository beside the package.
DEPLOY_SOURCE = Path(__file__).resolve().parent.parent / "deploy" / "qa_logits.cpp"
TORCHSCRIPT_SUFFIX = ".pt"
RECORD_SUFFIX = ".json"
_TOKENS_MAGIC, _LOGITS_MAGIC = b"QATOKENS", b"QALOGITS"


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def save_prepared(ready: InferenceModel, path: str | Path) -> Path:
    """Save a prepared model to `path` (`.pt2` for mode export, `.pt` for jit and ipex+jit), with its record.

    The record (`path` + ".json") keeps what was built and the eager model's output class, so that
    `load_prepared` gives back the same kind of callable. Modes that run the eager model (eager, ipex,
    compile, int8 in eager) have no standalone file: a ValueError says which modes do.
    """
    path = Path(path)
    mode = ready.record.mode
    if mode == "export":
        if path.suffix != PACKAGE_SUFFIX:
            raise ValueError(f"an export package is a {PACKAGE_SUFFIX} file; got {path}")
        source = ready.module.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != path.resolve():
            shutil.copyfile(source, path)
    elif mode in ("jit", "ipex+jit"):
        if path.suffix != TORCHSCRIPT_SUFFIX:
            raise ValueError(f"a TorchScript file is a {TORCHSCRIPT_SUFFIX} file; got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".partial" + TORCHSCRIPT_SUFFIX)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
            torch.jit.save(ready.module, str(partial))
        partial.replace(path)
    else:
        raise ValueError(f"{ready.record.ran.name} runs a Python model, which has no standalone file: save a "
                         "model prepared with mode 'export' (an AOTInductor package) or 'jit' / 'ipex+jit' "
                         "(TorchScript)")
    output_class = ready.output_class
    record = {"record": ready.record.as_dict(),
              "output_class": f"{output_class.__module__}.{output_class.__qualname__}" if output_class else None,
              "torch_version": torch.__version__}
    _record_path(path).write_text(json.dumps(record, indent=2) + "\n")
    return path


def _import_class(qualified: str | None) -> type | None:
    if not qualified:
        return None
    module, _, name = qualified.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        logger.warning("the output class %s is not importable here: outputs are returned as dicts", qualified)
        return None


def load_prepared(path: str | Path) -> InferenceModel:
    """Load what `save_prepared` wrote: an `InferenceModel` that runs it (no export, trace or compile).

    The record says what it was built as (`record.applied` gains "loaded from ..."); attributes of the
    eager model (`config`) are not available, as no eager model is loaded.
    """
    start = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nothing saved at {path}: save a prepared model there with save_prepared")
    saved = json.loads(_record_path(path).read_text()) if _record_path(path).is_file() else None
    if path.suffix == PACKAGE_SUFFIX:
        module: Any = load_package(path)
        spec, traced = ModeSpec("export", module.precision), False
    elif path.suffix == TORCHSCRIPT_SUFFIX:
        mode = saved["record"]["mode"] if saved else "jit"
        if mode == "ipex+jit":
            from cpu_inference_helpers.techniques.ipex_support import load_ipex

            load_ipex()  # IPEX's operators must be registered before its graph can load
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
            module = torch.jit.load(str(path))
        module.eval()
        spec, traced = ModeSpec(mode, saved["record"]["precision"] if saved else "fp32"), True
    else:
        raise ValueError(f"load_prepared reads {PACKAGE_SUFFIX} (export) and {TORCHSCRIPT_SUFFIX} (TorchScript) "
                         f"files; got {path}")
    applied = list(saved["record"]["applied"]) if saved else []
    record = OptimizationRecord(requested_mode=spec.mode, requested_precision=spec.precision, mode=spec.mode,
                                precision=spec.precision, applied=[*applied, f"loaded from {path.name}"],
                                choices=[Step(**step) for step in saved["record"]["choices"]] if saved else [])
    output_class = _import_class(saved["output_class"]) if saved else None
    record.setup_seconds = time.perf_counter() - start  # loading the file: what a fresh process pays to prepare
    return InferenceModel(module, record, None, traced, output_class)


# --- the token and logits files the C++ program reads and writes ---------------------------------------------

def write_token_ids(path: str | Path, inputs: Mapping[str, torch.Tensor]) -> Path:
    """Write a batch of token ids (a tokenizer's output: 2-D integer tensors of one shape) for `qa_logits`."""
    tensors = {name: tensor for name, tensor in inputs.items()}
    shapes = {tuple(tensor.shape) for tensor in tensors.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"token inputs must be 2-D tensors of one shape (batch, sequence); got {shapes}")
    batch, sequence = next(iter(shapes))
    path = Path(path)
    with path.open("wb") as out:
        out.write(_TOKENS_MAGIC + struct.pack("<3q", len(tensors), batch, sequence))
        for name, tensor in tensors.items():
            encoded = name.encode()
            out.write(struct.pack("<q", len(encoded)) + encoded)
            out.write(tensor.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return path


def read_logits(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the logits `qa_logits` wrote: output name -> float32 tensor (batch, sequence)."""
    data = Path(path).read_bytes()
    if data[:8] != _LOGITS_MAGIC:
        raise ValueError(f"{path} is not a QALOGITS file")
    count, batch, sequence = struct.unpack_from("<3q", data, 8)
    offset, outputs = 32, {}
    for _ in range(count):
        (length,) = struct.unpack_from("<q", data, offset)
        name = data[offset + 8: offset + 8 + length].decode()
        offset += 8 + length
        values = np.frombuffer(data, dtype="<f4", count=batch * sequence, offset=offset).reshape(batch, sequence)
        outputs[name] = torch.from_numpy(values.copy())
        offset += 4 * batch * sequence
    return outputs


# --- building and running the C++ program -----------------------------------------------------------------------

@dataclass(frozen=True)
class DeployRun:
    """One run of the C++ program: its logits and seconds. `load_seconds`, `first_call_seconds` and
    `main_seconds` (main's start to the logits written) are the program's own clocks; `process_seconds` is
    the whole process as its caller saw it (libtorch's loading included); `steady_median_seconds` the median
    of `repeats` further calls (0 when none were asked)."""

    logits: dict[str, torch.Tensor]
    load_seconds: float
    first_call_seconds: float
    main_seconds: float
    process_seconds: float
    steady_median_seconds: float = 0.0
    repeats: int = 0


def torch_library_dir() -> Path:
    """The torch wheel's shared libraries (libtorch, libtorch_cpu, libc10)."""
    return Path(torch.__file__).resolve().parent / "lib"


def compile_command(source: Path, binary: Path) -> list[str]:
    """The g++ command that builds `source` against the torch wheel's headers and libraries."""
    root = Path(torch.__file__).resolve().parent
    library = torch_library_dir()
    compiler = os.environ.get("CXX", "g++")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [compiler, "-O2", "-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", str(source),
            "-I", str(root / "include"), "-I", str(root / "include" / "torch" / "csrc" / "api" / "include"),
            "-L", str(library), "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10", "-Wl,--as-needed",
            f"-Wl,-rpath,{library}", "-o", str(binary)]


def deploy_build_problem() -> str | None:
    """None when this stack can build the C++ program, else why not (no compiler, no headers)."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) on PATH: apt install g++"
    root = Path(torch.__file__).resolve().parent
    if not (root / "include" / "torch" / "csrc" / "inductor" / "aoti_package" / "model_package_loader.h").is_file():
        return f"this torch wheel ({torch.__version__}) ships no AOTInductor package loader header"
    if not DEPLOY_SOURCE.is_file():
        return f"the C++ source is missing ({DEPLOY_SOURCE}); it lives in the repository's deploy/ folder"
    return None


def build_deploy_program(build_dir: str | Path | None = None) -> Path:
    """Build `deploy/qa_logits.cpp` (once per source and torch version; cached in `build_dir`) and return it."""
    problem = deploy_build_problem()
    if problem:
        raise RuntimeError(f"cannot build the C++ program: {problem}")
    source = DEPLOY_SOURCE
    key = hashlib.sha256(source.read_bytes() + torch.__version__.encode()).hexdigest()[:12]
    folder = Path(build_dir) if build_dir else Path(tempfile.gettempdir()) / "cpu-inference-deploy"
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / f"qa_logits-{key}"
    if binary.is_file():
        return binary
    partial = folder / f".qa_logits-{key}.partial-{os.getpid()}"  # per process: two may build it at once
    result = subprocess.run(compile_command(source, partial), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"g++ failed building {source.name}:\n{result.stderr[-4000:]}")
    partial.replace(binary)
    logger.info("built %s", binary)
    return binary


def run_deploy_program(binary: str | Path, model_path: str | Path, inputs: Mapping[str, torch.Tensor],
                       repeats: int = 0, work_dir: str | Path | None = None) -> DeployRun:
    """Run the C++ program on `model_path` (.pt TorchScript or .pt2 package) for a batch of token ids.

    `repeats` further calls after the first give the steady-state median. The program's threads follow
    OMP_NUM_THREADS / the process's CPU affinity, as libtorch's do.
    """
    model_path = Path(model_path)
    kind = "aoti" if model_path.suffix == PACKAGE_SUFFIX else "torchscript"
    with tempfile.TemporaryDirectory(dir=work_dir) as folder:
        tokens, logits = Path(folder) / "tokens.bin", Path(folder) / "logits.bin"
        write_token_ids(tokens, inputs)
        start = time.perf_counter()
        result = subprocess.run([str(binary), kind, str(model_path), str(tokens), str(logits), str(repeats)],
                                capture_output=True, text=True, check=False)
        process_seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"qa_logits failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
        timings = json.loads(result.stdout.strip().splitlines()[-1])
        return DeployRun(read_logits(logits), timings["load_s"], timings["first_call_s"], timings["main_s"],
                         process_seconds, timings["steady_median_s"], timings["repeats"])


__all__ = ["DEPLOY_SOURCE", "DeployRun", "PackagedModel", "build_deploy_program", "compile_command",
           "deploy_build_problem", "load_prepared", "read_logits", "run_deploy_program", "save_prepared",
           "write_token_ids"]
