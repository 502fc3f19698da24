"""Quieting third-party loggers for the duration of a call, and the profiler's C++ start and stop lines.

The library never configures logging; it only keeps other libraries' noise out of its callers' output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def logger_level(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Set the logger `name` to `level` inside the block and restore its previous level afterwards."""
    target = logging.getLogger(name)
    previous = target.level
    target.setLevel(level)
    try:
        yield
    finally:
        target.setLevel(previous)


@contextlib.contextmanager
def root_logging_kept() -> Iterator[None]:
    """Undo, at the end of the block, what it did to the root logger: handlers added and the level set.

    Some modules call `logging.basicConfig` when imported (torch's CPU launcher `torch.backends.xeon.run_cpu`,
    IPEX 2.8), which would re-format and un-silence the caller's whole log output; import them inside this.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


@contextlib.contextmanager
def process_stderr_silenced() -> Iterator[None]:
    """Send what C++ code writes to the process's stderr (file descriptor 2) to /dev/null inside the block.

    Python's own `sys.stderr` is flushed first and restored with the descriptor afterwards. Where the
    process has no descriptor 2 (e.g. pythonw on Windows) there is nothing to silence.
    """
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet_profile(**options: Any) -> Iterator[Any]:
    """`torch.profiler.profile(**options)` without the C++ lines its start and stop print to stderr.

    Kineto prints them from C++, bypassing Python's logging: "gpuGetDeviceCount failed" (PyPI's CUDA
    builds of torch on machines without a GPU) and "USDT: ... profiler_start / profiler_stop" (torch
    2.13). Only the profiler's start and stop are silenced, not the profiled calls.
    """
    import torch.profiler

    profiler = torch.profiler.profile(**options)
    with process_stderr_silenced():
        profiler.__enter__()
    try:
        yield profiler
    finally:
        with process_stderr_silenced():
            profiler.__exit__(None, None, None)
