import logging

import pytest
import torch

from cpu_inference_helpers.infra.errors import TORCHSCRIPT_INTERPRETER_FAILED, error_summary
from cpu_inference_helpers.techniques.attention import with_attention_implementation
from cpu_inference_helpers.techniques.parity import max_abs_difference
from cpu_inference_helpers.techniques.tracing import contrasting_inputs, forward_parameter_names, trace_model


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


class DataDependentBranch(torch.nn.Module):
    """Takes one of two branches depending on the input's values: a trace records only one."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        total = input_ids.float().mean()
        if total > 4:
            return total * 2
        return total - 1000


def test_a_data_dependent_branch_falls_back_instead_of_tracing_one_branch(caplog):
    model = DataDependentBranch()
    example = {"input_ids": torch.full((1, 8), 5, dtype=torch.long)}
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers.techniques.tracing"):
        result = trace_model(model, example)
    assert not result.traced and result.model is model
    assert "TracerWarning" in result.reason and "Python boolean" in result.reason
    assert "differs from eager" in result.reason and "torch.compile" in result.reason
    assert "failed to use PyTorch jit mode" in caplog.text
    # Without the check the trace "works" on the example and is silently wrong on other inputs:
    other = {"input_ids": torch.ones(1, 8, dtype=torch.long)}
    with pytest.warns(torch.jit.TracerWarning):
        raw = torch.jit.trace(model, example_kwarg_inputs=example, strict=False)
    assert raw(**other).item() != model(**other).item()


class SkipsMaskWhenUnpadded(torch.nn.Module):
    """transformers 5's pattern: drop the attention mask when nothing is padded (a data-dependent branch)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        values = input_ids.float()
        if bool(attention_mask.all()):
            return values.sum(dim=-1)
        return (values * attention_mask).sum(dim=-1)


def test_a_mask_branch_is_accepted_only_when_it_holds_for_other_padding():
    model = SkipsMaskWhenUnpadded()
    ids = torch.arange(1, 9).reshape(1, 8)
    padded = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]])}
    unpadded = {"input_ids": ids, "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    assert trace_model(model, padded).traced  # the masked branch is right for every input
    result = trace_model(model, unpadded)  # the unmasked branch is wrong for padded inputs
    assert not result.traced and "on another input it differs" in result.reason


def test_contrasting_inputs_change_ids_and_flip_padding(example_batch):
    second = contrasting_inputs(example_batch)
    assert {k: v.shape for k, v in second.items()} == {k: v.shape for k, v in example_batch.items()}
    assert not torch.equal(second["input_ids"], example_batch["input_ids"])
    assert bool((example_batch["attention_mask"] == 0).any()) and bool(second["attention_mask"].all())
    assert torch.equal(second["token_type_ids"], example_batch["token_type_ids"])


def test_transformers_bert_traces_with_either_attention(tiny_model, example_batch):
    for attention in ("sdpa", "eager"):
        result = trace_model(with_attention_implementation(tiny_model, attention), example_batch)
        assert result.traced, result.reason


class _Projection(torch.nn.Module):
    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, weight).relu()


def test_an_error_inside_a_traced_graph_is_told_by_its_cause():
    """TorchScript's first line ("The following operation failed ...") says nothing; the summary gives the cause."""
    traced = torch.jit.freeze(torch.jit.trace(_Projection().eval(), (torch.ones(2, 3), torch.ones(4, 3))))
    with pytest.raises(RuntimeError) as raised:
        traced(torch.ones(2, 3), torch.ones(4, 5))
    assert str(raised.value).startswith(TORCHSCRIPT_INTERPRETER_FAILED)
    summary = error_summary(raised.value)
    assert summary.startswith("RuntimeError: a TorchScript graph failed: ") and "cannot be multiplied" in summary


def test_a_fused_operator_that_fails_is_named():
    # the message IPEX's fused attention gave on an AVX2-only CPU in bf16 (2026-12-06), as TorchScript words it
    message = "\n".join([
        TORCHSCRIPT_INTERPRETER_FAILED, "Traceback of TorchScript (most recent call last):", "",
        "      graph(%q: Tensor, %k: Tensor, %relative_qk: Tensor, %alpha:int, %dim_per_head:int):",
        "        %scores = ipex::mha_scores_calc(%q, %k, %relative_qk, %alpha, %dim_per_head)",
        "                  ~~~~ <--- HERE", "        return (%scores) ",
        "RuntimeError: could not create a primitive descriptor for the matmul primitive.",
    ])
    assert error_summary(RuntimeError(message)) == (
        "RuntimeError: a TorchScript graph failed in ipex::mha_scores_calc: "
        "RuntimeError: could not create a primitive descriptor for the matmul primitive.")
    assert error_summary(RuntimeError(message), max_chars=20) == "RuntimeError: a Torc"
