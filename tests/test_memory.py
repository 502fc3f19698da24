"""Set-up's freed temporaries go back to the system instead of staying in the C heap."""

import os
import platform
from pathlib import Path

import pytest
import torch

from cpu_inference_helpers.infra.memory import release_freed_memory

glibc_linux = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                 reason="malloc_trim is glibc's")


def _rss_mib() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@glibc_linux
def test_freed_heap_memory_is_returned():
    """200 MB of 100 KB tensors (glibc's heap, below its mmap threshold), freed while the last one lives on:
    glibc keeps the pages (it trims only the heap's top) until release_freed_memory hands them back."""
    release_freed_memory()
    chunks = [torch.ones(25_000) for _ in range(2000)]
    survivor = chunks[-1]
    before_free = _rss_mib()
    del chunks
    held = _rss_mib()
    if held <= before_free - 50:
        pytest.skip("glibc returned the memory by itself here: nothing for release_freed_memory to show")
    assert release_freed_memory()
    assert _rss_mib() < held - 150
    assert survivor.sum().item() == 25_000


def test_without_malloc_trim_nothing_happens(monkeypatch):
    from cpu_inference_helpers.infra import memory

    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert release_freed_memory() is False


@pytest.mark.parametrize("mode", ["eager", "auto"])
def test_preparing_a_model_returns_its_freed_memory(monkeypatch, tiny_model, example_batch, mode):
    """Once per preparation, after every attempt `auto` made (their temporaries are garbage by then)."""
    from cpu_inference_helpers import optimize

    calls = []
    monkeypatch.setattr(optimize, "release_freed_memory", lambda: calls.append(mode))
    optimize.prepare_for_inference(tiny_model, example_batch, mode=mode,
                                   **({"dynamic_shapes": False} if mode == "auto" else {}))
    assert calls == [mode]
