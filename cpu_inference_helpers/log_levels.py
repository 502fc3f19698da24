"""Quieting third-party loggers: one for the duration of a call, the profiler's C++ start-up message.

The library never configures logging; it only keeps other libraries' noise out of its callers' output.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator


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


def quiet_profiler_start_up() -> None:
    """Keep `torch.profiler`'s C++ start-up error ("gpuGetDeviceCount failed") off stderr on machines without a GPU.

    PyPI's CUDA builds of torch make kineto log it the first time a process profiles; kineto reads
    `KINETO_LOG_LEVEL` then (a value the user set wins).
    """
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
