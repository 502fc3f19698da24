"""Intel Extension for PyTorch (IPEX): a safe import, a version check, and `ipex.optimize`.

IPEX is discontinued (last CPU release 2.8.0) and brittle to import: it needs the
same torch major.minor, fails with transformers 5.x, and its own version check
ends the process on a mismatch. Everything here is built so that a missing or
broken IPEX costs the user one clear log line and a fallback, never a crash.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.infra.log_levels import root_logging_kept
from cpu_inference_helpers.infra.versions import installed_version
from cpu_inference_helpers.record import Built, Step
from cpu_inference_helpers.techniques.dtypes import as_dtype, precision_name

logger = logging.getLogger(__name__)

IPEX_MODULE = "intel_extension_for_pytorch"
IPEX_DISTRIBUTION = "intel-extension-for-pytorch"
#: Set to 1 to make the helpers behave as if IPEX were not installed.
DISABLE_ENV_VAR = "CPU_INFERENCE_DISABLE_IPEX"
#: The warning IPEX gives on the first run of every traced graph (its TorchScript passes are deprecated).
IPEX_JIT_DEPRECATION = ".*JIT pass will be deprecated.*"


@dataclass(frozen=True)
class IpexStatus:
    """Whether IPEX can be used here, and if not, why."""

    usable: bool
    version: str | None
    reason: str | None = None

    def describe(self) -> str:
        if self.usable:
            return f"usable (version {self.version})"
        return f"not usable: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"usable": self.usable, "version": self.version, "reason": self.reason}


def _major_minor(version: str) -> str | None:
    match = re.match(r"(\d+\.\d+)", version)
    return match.group(1) if match else None


def check_version_compatibility(ipex_version: str, torch_version: str) -> str | None:
    """Return why an IPEX version cannot work with a torch version, or None if it can.

    IPEX x.y only runs with torch x.y.* (its own check would end the process).
    """
    ipex_mm, torch_mm = _major_minor(ipex_version), _major_minor(torch_version)
    if ipex_mm is None or torch_mm is None or ipex_mm != torch_mm:
        return (
            f"IPEX {ipex_version} needs torch {ipex_mm}.*, but torch {torch_version} is installed; "
            f"install matching versions, e.g. pip install torch=={ipex_mm}.* {IPEX_DISTRIBUTION}=={ipex_version}"
        )
    return None


def _import_ipex() -> tuple[ModuleType | None, IpexStatus]:
    if os.environ.get(DISABLE_ENV_VAR, "").strip() not in ("", "0"):
        return None, IpexStatus(False, None, f"disabled by the environment variable {DISABLE_ENV_VAR}")
    version = installed_version(IPEX_DISTRIBUTION)
    if version is None and importlib.util.find_spec(IPEX_MODULE) is None:
        return None, IpexStatus(
            False,
            None,
            f"not installed (pip install {IPEX_DISTRIBUTION}; Linux x86-64 only, needs torch 2.8)",
        )
    if version is not None:
        mismatch = check_version_compatibility(version, torch.__version__)
        if mismatch:
            return None, IpexStatus(False, version, mismatch)
    try:  # IPEX calls logging.basicConfig when imported: root_logging_kept undoes it
        with warnings.catch_warnings(), _import_chatter_captured(), root_logging_kept():
            warnings.simplefilter("ignore")
            module = importlib.import_module(IPEX_MODULE)
    except (Exception, SystemExit) as error:  # IPEX may raise anything, or exit, while importing
        return None, IpexStatus(
            False,
            version,
            f"import failed with {error_summary(error)} "
            "(IPEX 2.8 needs torch 2.8.x and transformers<5)",
        )
    return module, IpexStatus(True, getattr(module, "__version__", version))


#: The logger through which importing IPEX makes torch say "No CUDA runtime is found, using CUDA_HOME=...".
IMPORT_CHATTY_LOGGER = "torch.utils.cpp_extension"


@contextlib.contextmanager
def _import_chatter_captured() -> Iterator[None]:
    """Keep what IPEX prints while importing out of the user's output; log it at DEBUG level instead.

    Importing IPEX 2.8 prints a C++ "Overriding a previously registered kernel ... AutocastCPU"
    warning straight to file descriptor 2, and makes torch log "No CUDA runtime is found, using
    CUDA_HOME=..." through `IMPORT_CHATTY_LOGGER`; neither is actionable for a CPU user. For the
    import only, the descriptor and `sys.stderr` go to buffers and that one logger writes to a buffer
    only (its own handlers set aside, no propagation); everything is restored afterwards. No other
    logger or handler of the process is touched, except handlers IPEX itself creates during the
    import, which are pointed at the real `sys.stderr` (so IPEX's later warnings still reach the user).
    """
    real_stderr = sys.stderr
    with contextlib.suppress(Exception):
        real_stderr.flush()
    saved_descriptor = os.dup(2)
    python_output = io.StringIO()
    chatty = logging.getLogger(IMPORT_CHATTY_LOGGER)
    buffer_handler = logging.StreamHandler(python_output)
    previous_propagate, previous_handlers = chatty.propagate, list(chatty.handlers)
    chatty.handlers = [buffer_handler]
    chatty.propagate = False
    existing = {id(handler) for handler in _stream_handlers()}
    with tempfile.TemporaryFile() as native_output:
        os.dup2(native_output.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_output):
                yield
        finally:
            os.dup2(saved_descriptor, 2)
            os.close(saved_descriptor)
            chatty.handlers = previous_handlers
            chatty.propagate = previous_propagate
            native_output.seek(0)
            captured = native_output.read().decode(errors="replace") + python_output.getvalue()
            for handler in _stream_handlers():  # created by IPEX during the import, pointed at our buffer
                if id(handler) not in existing and handler.stream is python_output:
                    handler.setStream(real_stderr)
    if captured.strip():
        logger.debug("importing IPEX printed:\n%s", captured.strip())


def _stream_handlers() -> list[logging.StreamHandler]:
    """Every StreamHandler with a settable stream attached to the root logger or a named logger.

    (`logging.lastResort`-style handlers always write to the current `sys.stderr`; they are left out.)
    """
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        handler
        for logger_object in loggers
        for handler in getattr(logger_object, "handlers", [])
        if isinstance(handler, logging.StreamHandler) and not isinstance(type(handler).__dict__.get("stream"), property)
    ]


@lru_cache(maxsize=1)
def _cached_import() -> tuple[ModuleType | None, IpexStatus]:
    return _import_ipex()


def probe_ipex(refresh: bool = False) -> IpexStatus:
    """Report whether IPEX is usable, importing it at most once per process.

    Args:
        refresh: forget the cached answer and probe again (tests, or after an install).
    """
    if refresh:
        _cached_import.cache_clear()
    return _cached_import()[1]


def load_ipex() -> ModuleType | None:
    """Return the imported IPEX module, or None when it is not usable (see `probe_ipex`)."""
    return _cached_import()[0]


def optimize_with_ipex(
    model: torch.nn.Module,
    dtype: str | torch.dtype = torch.float32,
    auto_kernel_selection: bool = False,
) -> Built:
    """Apply `ipex.optimize` for inference, or return the model unchanged with the reason.

    Args:
        model: the model to optimise; it is put in eval mode and not modified in place.
        dtype: "fp32" / torch.float32, "bf32" (fp32 weights) or "bf16" / torch.bfloat16 (bf16 weights
            prepacked for oneDNN).
        auto_kernel_selection: True lets oneDNN run fp32 Linear layers (fast on CPUs where
            MKL is slow, e.g. AMD); False keeps IPEX's default MKL-based fp32 kernels.

    Returns:
        A `Built` of mode "ipex"; when IPEX was not used, mode "eager" with the model unchanged and a
        fallback `Step("ipex", why)`.
    """
    precision, tensors = precision_name(dtype), as_dtype(dtype)
    ipex = load_ipex()
    if ipex is None:
        reason = probe_ipex().reason or "IPEX is not usable"
        logger.warning("IPEX not applied, using the native PyTorch path: %s", reason)
        return Built(model, "eager", precision, fallbacks=[Step("ipex", reason)])
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = ipex.optimize(
                model, dtype=tensors, inplace=False, auto_kernel_selection=auto_kernel_selection
            )
    except (RuntimeError, TypeError, ValueError, AssertionError, NotImplementedError) as error:
        reason = f"ipex.optimize failed with {error_summary(error)}"
        logger.warning("IPEX not applied, using the native PyTorch path: %s", reason)
        return Built(model, "eager", precision, fallbacks=[Step("ipex", reason)])
    kernels = "oneDNN" if auto_kernel_selection else "default (MKL)"
    return Built(optimized, "ipex", precision,
                 applied=["ipex.optimize" + (f" (fp32 kernels: {kernels})" if tensors == torch.float32 else "")])
