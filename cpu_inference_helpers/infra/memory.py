"""Giving back the memory that set-up freed: glibc keeps freed heap memory unless asked to return it.

Preparing a model allocates and frees gigabytes of temporaries (tracing bert-base's int8 graph at
seq 384, batch 8 peaks about 4 GB above what the result keeps). glibc's allocator returns freed memory
to the system only from the top of its heaps, so the process can stay gigabytes larger than what is
alive, and a few such preparations in one process exhaust a 23 GB machine. `release_freed_memory`
calls glibc's `malloc_trim`, which returns every freed page; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Collect Python garbage, then hand the C heap's free pages back to the system.

    Returns True where glibc's `malloc_trim` ran (it only returns memory nothing uses: safe at any time,
    and cheap, a few milliseconds), False where the C library has no such call.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def rss_megabytes() -> float:
    """This process's resident memory now, in MiB (Linux /proc; 0.0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_megabytes() -> float:
    """This process's peak resident memory so far, in MiB (getrusage; Linux reports KiB)."""
    import resource  # Unix only: imported here, so that the module imports everywhere

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
