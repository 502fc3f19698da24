"""SmoothQuant before PT2E's static int8: same outputs, narrower input ranges, less int8 error on outliers."""

import pytest
import torch

from cpu_inference_helpers.techniques.quantization import quantize_linear_by_hand
from cpu_inference_helpers.techniques.smoothquant import (
    SmoothedLinear,
    input_channel_ranges,
    smooth_linear_inputs,
    smoothing_scales,
)


def test_the_smoothed_model_computes_what_the_model_computes(tiny_model, example_batch):
    smoothed = smooth_linear_inputs(tiny_model, [example_batch], alpha=0.5)
    linears = [module for module in tiny_model.modules() if isinstance(module, torch.nn.Linear)]
    wrapped = [module for module in smoothed.modules() if isinstance(module, SmoothedLinear)]
    assert len(wrapped) == len(linears) > 0
    assert not any(isinstance(module, SmoothedLinear) for module in tiny_model.modules())  # a copy
    with torch.no_grad():
        expected, got = tiny_model(**example_batch), smoothed(**example_batch)
    assert torch.allclose(expected.start_logits, got.start_logits, atol=1e-4)
    assert torch.allclose(expected.end_logits, got.end_logits, atol=1e-4)


def test_at_alpha_one_every_linear_input_channel_has_range_one(tiny_model, example_batch):
    """s_j = max|X_j| at alpha 1: what each inner Linear sees is its input divided per channel by its range."""
    before = input_channel_ranges(tiny_model, [example_batch])
    after = input_channel_ranges(smooth_linear_inputs(tiny_model, [example_batch], alpha=1.0), [example_batch])
    for name, ranges in before.items():
        assert torch.allclose(after[f"{name}.linear"], torch.ones_like(ranges), rtol=1e-4), name


def test_query_key_and_value_share_one_scale_tensor(tiny_model, example_batch):
    """They read one tensor: one set of scales from their stacked weights, one divided input in the graph."""
    smoothed = smooth_linear_inputs(tiny_model, [example_batch], alpha=0.5)
    attention = smoothed.bert.encoder.layer[0].attention.self
    query, key, value = attention.query, attention.key, attention.value
    assert query.inverse_scales is key.inverse_scales is value.inverse_scales
    original = tiny_model.bert.encoder.layer[0].attention.self
    ranges = input_channel_ranges(tiny_model, [example_batch])["bert.encoder.layer.0.attention.self.query"]
    stacked = torch.cat([original.query.weight, original.key.weight, original.value.weight])
    assert torch.allclose(query.inverse_scales, 1 / smoothing_scales(ranges, stacked, 0.5))
    output_dense = smoothed.bert.encoder.layer[0].attention.output.dense  # reads another tensor
    assert output_dense.inverse_scales is not query.inverse_scales


def test_smoothquant_cuts_static_int8_error_on_an_input_with_an_outlier_channel():
    """The case it exists for: one input channel 60x the others; per-tensor int8 loses the rest without it."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 64, generator=generator)
    x[:, 7] *= 60.0
    weight, bias = torch.randn(32, 64, generator=generator) / 8, torch.zeros(32)
    exact = x @ weight.t()
    plain = quantize_linear_by_hand(x, weight, bias).output
    scales = smoothing_scales(x.abs().amax(dim=0), weight, alpha=0.5)
    smoothed = quantize_linear_by_hand(x / scales, weight * scales, bias).output
    plain_error, smoothed_error = (float((out - exact).abs().mean()) for out in (plain, smoothed))
    assert smoothed_error < plain_error / 2, (plain_error, smoothed_error)


def test_a_dead_channel_keeps_scale_one():
    scales = smoothing_scales(torch.tensor([0.0, 2.0]), torch.tensor([[1.0, 0.5], [0.5, 0.25]]), alpha=0.5)
    assert scales[0] == 1.0 and torch.isfinite(scales).all()


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_zero_one_is_refused(alpha, tiny_model, example_batch):
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        smooth_linear_inputs(tiny_model, [example_batch], alpha=alpha)


def test_no_calibration_batch_is_refused(tiny_model):
    with pytest.raises(ValueError, match="needs calibration batches"):
        smooth_linear_inputs(tiny_model, [], alpha=0.5)
