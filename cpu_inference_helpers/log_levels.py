"""Quieting a third-party logger for the duration of one call (the library never configures logging)."""

from __future__ import annotations

import contextlib
import logging
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
