import logging

import pytest
import torch

from cpu_inference_helpers.tracing import (
    forward_parameter_names,
    max_abs_difference,
    trace_model,
)


def test_trace_with_dict_inputs_matches_eager(tiny_model, example_batch):
    result = trace_model(tiny_model, example_batch)
    assert result.traced and result.frozen and result.reason is None
    assert isinstance(result.model, torch.jit.ScriptModule)
    with torch.no_grad():
        expected = tiny_model(**example_batch)
        actual = result.model(**example_batch)
    assert max_abs_difference(expected, actual) < 1e-4


def test_bf16_trace_passes_its_check(tiny_model, example_batch):
    result = trace_model(tiny_model, example_batch, dtype=torch.bfloat16)
    assert result.traced, result.reason
    graph = str(result.model.graph)
    assert "BFloat16" in graph or "bfloat16" in graph.lower()


def test_positional_order_pitfall_is_real(tiny_model, example_batch):
    """Raw torch.jit.trace on tuple(tokenizer_output.values()) silently swaps mask and token types."""
    names = forward_parameter_names(tiny_model)
    assert names[:3] == ["input_ids", "attention_mask", "token_type_ids"]
    assert list(example_batch)[:3] == ["input_ids", "token_type_ids", "attention_mask"]
    positional = tuple(example_batch.values())
    with torch.no_grad():
        wrong = torch.jit.trace(tiny_model, positional, strict=False)(*positional)
        right = tiny_model(**example_batch)
    assert max_abs_difference(right, wrong) > 1e-3


def test_positional_inputs_fall_back_with_explanation(tiny_model, example_batch, caplog):
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        result = trace_model(tiny_model, tuple(example_batch.values()))
    assert not result.traced and result.model is tiny_model
    assert "dict" in result.reason and "attention_mask" in result.reason
    assert "failed to use PyTorch jit mode" in caplog.text


class ReturnsText(torch.nn.Module):
    def forward(self, input_ids):
        return {"label": "not a tensor", "ids": input_ids}


class DependsOnPythonState(torch.nn.Module):
    """Output changes with a Python counter: the trace bakes in one value."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, input_ids):
        self.calls += 1
        return input_ids.float() * self.calls


@pytest.mark.parametrize("model", [ReturnsText(), DependsOnPythonState()], ids=["non-tensor", "python-state"])
def test_untraceable_models_fall_back_to_eager(model, caplog):
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        result = trace_model(model, {"input_ids": torch.ones(1, 4, dtype=torch.long)})
    assert not result.traced and result.model is model
    assert result.reason
    assert "failed to use PyTorch jit mode due to" in caplog.text


def test_max_abs_difference_handles_shapes_and_types():
    a = {"x": torch.zeros(2), "y": (torch.ones(1),)}
    assert max_abs_difference(a, (torch.zeros(2), torch.full((1,), 3.0))) == 2.0
    assert max_abs_difference(a, (torch.zeros(3), torch.ones(1))) == float("inf")
