"""How many cores this process may use: one count for the benchmark, the throughput layouts and a local Ray cluster."""

from __future__ import annotations

import os


def usable_cpu_count() -> int:
    """The cores this process may run on (Linux: its affinity mask, not the host's; elsewhere `os.cpu_count()`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
