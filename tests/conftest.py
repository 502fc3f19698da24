"""Shared fixtures: a tiny BERT QA model, a padded example batch, and IPEX/CPU feature gates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cpu_inference_helpers.models import build_random_qa_model, load_offline_tokenizer
from cpu_inference_helpers.techniques import ipex_support
from cpu_inference_helpers.techniques.capabilities import cached_capabilities, detect_capabilities

CPUINFO_DIR = Path(__file__).parent / "cpuinfo"


def cpuinfo_capabilities(name: str):
    """Capabilities computed from a stored /proc/cpuinfo of another machine."""
    return detect_capabilities((CPUINFO_DIR / f"{name}.txt").read_text())


requires_ipex = pytest.mark.skipif(
    not ipex_support.probe_ipex().usable, reason=f"IPEX not usable here: {ipex_support.probe_ipex().reason}"
)


def ipex_bf16_usable() -> bool:
    """Whether IPEX can run bf16 here: usable, and the AVX-512 BW/VL/DQ or AVX-NE-CONVERT its bf16 weight prepack
    needs (not on an AVX2-only CPU, where it logs a fallback)."""
    return ipex_support.probe_ipex().usable and cached_capabilities().onednn_bf16_usable


requires_native_bf16 = pytest.mark.skipif(
    not cached_capabilities().native_bf16, reason="this CPU has no native bf16 instructions"
)
requires_amx = pytest.mark.skipif(not cached_capabilities().has_amx, reason="this CPU has no AMX tiles")


@pytest.fixture(scope="session")
def tokenizer():
    return load_offline_tokenizer()


@pytest.fixture(scope="session")
def tiny_model():
    return build_random_qa_model("random-bert-tiny", seed=0)


@pytest.fixture(scope="session")
def example_batch(tokenizer) -> dict[str, torch.Tensor]:
    """Two question/context pairs of different lengths, padded: the attention mask matters."""
    encoding = tokenizer(
        ["Who wrote the report?", "When?"],
        [
            "The report was written by the committee in 1999 after a long debate.",
            "In 1999.",
        ],
        padding="max_length",
        max_length=32,
        truncation="only_second",
        return_tensors="pt",
    )
    return dict(encoding)


@pytest.fixture
def fresh_ipex_probe(monkeypatch) -> Iterator[None]:
    """Re-probe IPEX before and after a test that changes what the probe sees (after undoing its patches)."""
    ipex_support.probe_ipex(refresh=True)
    yield
    monkeypatch.undo()
    ipex_support.probe_ipex(refresh=True)


#: Test files that take minutes (the browser, the benchmark end to end, Ray, the real checkpoint's int8): collected
#: first, so that pytest-xdist (`make test` runs two processes, a file whole in one) starts them at once instead of
#: leaving one of them running alone at the end.
LONG_FILES_FIRST = ("test_browser.py", "test_bench.py", "test_ray_engine.py", "test_quantization.py",
                    "test_exporting.py", "test_optimize.py")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the items of `LONG_FILES_FIRST` first, in that order; the others keep theirs (a stable sort)."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES_FIRST.index(name) if name in LONG_FILES_FIRST else len(LONG_FILES_FIRST)
    items.sort(key=rank)
