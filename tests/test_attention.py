"""Switching the attention implementation keeps the function and leaves the user's model alone."""

import torch

from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.optimize import prepare_for_inference
from cpu_inference_helpers.techniques.attention import attention_implementation, with_attention_implementation
from cpu_inference_helpers.techniques.parity import max_abs_difference


def test_switching_to_eager_attention_keeps_outputs_and_shares_weights(example_batch):
    model = build_random_qa_model("random-bert-tiny", seed=5, attn_implementation="sdpa")
    rng_before = torch.random.get_rng_state()
    switched = with_attention_implementation(model, "eager")
    assert torch.equal(rng_before, torch.random.get_rng_state())
    assert attention_implementation(switched) == "eager" and attention_implementation(model) == "sdpa"
    assert switched.qa_outputs.weight.data_ptr() == model.qa_outputs.weight.data_ptr()
    assert not switched.training
    with torch.no_grad():
        assert max_abs_difference(model(**example_batch), switched(**example_batch)) < 1e-5


def test_same_implementation_or_plain_module_is_returned_unchanged():
    model = build_random_qa_model("random-bert-tiny", attn_implementation="eager")
    assert with_attention_implementation(model, "eager") is model
    plain = torch.nn.Linear(2, 2)
    assert attention_implementation(plain) is None and with_attention_implementation(plain, "eager") is plain


def test_front_door_applies_the_requested_attention(example_batch):
    model = build_random_qa_model("random-bert-tiny", seed=6)
    ready = prepare_for_inference(model, example_batch, mode="jit", attention="eager")
    assert "eager attention" in ready.record.applied and attention_implementation(model) == "sdpa"
    with torch.no_grad():
        assert max_abs_difference(model(**example_batch), ready(**example_batch)) < 1e-4
