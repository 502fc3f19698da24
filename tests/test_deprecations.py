"""Upstream deprecations are said once (record notes, docs/compatibility.md), not as a warning on every call."""

import warnings
from pathlib import Path

from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.techniques import deprecations
from cpu_inference_helpers.techniques.tracing import trace_model

COMPATIBILITY = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"


def test_the_compatibility_page_lists_every_deprecation_as_the_code_says_it():
    text = COMPATIBILITY.read_text()
    for item in deprecations.ALL:
        assert f"| {item.what} | {item.since} | {item.replacement} | {item.source} |" in text, item.what


def test_tracing_warns_no_deprecation_per_call_and_the_record_says_it_once(tiny_model, example_batch):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # torch 2.10+ would warn on trace and on freeze
        built = trace_model(tiny_model, example_batch)
    assert built.mode == "jit"
    traced = prepare_for_inference(tiny_model, example_batch, mode="jit")
    assert traced.record.notes == [deprecations.TORCHSCRIPT.note()]
    assert "note: deprecated: torch.jit.trace" in traced.record.summary()
    assert prepare_for_inference(tiny_model, example_batch, mode="eager").record.notes == []

