"""Output differences: the largest one and a quantile, over nested model outputs, inf when structures differ."""

import math

import torch
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from cpu_inference_helpers.techniques.parity import abs_difference_quantile, max_abs_difference


def _outputs(start: torch.Tensor, end: torch.Tensor) -> QuestionAnsweringModelOutput:
    return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)


def test_differences_span_every_tensor_of_a_nested_output():
    reference = _outputs(torch.zeros(2, 50), torch.zeros(2, 50))
    end = torch.zeros(2, 50)
    end[1, 7] = -3.0  # one outlier among 200 elements, in the second tensor
    candidate = _outputs(torch.full((2, 50), 0.5), end)
    assert max_abs_difference(reference, candidate) == 3.0
    assert abs_difference_quantile(reference, candidate, 1.0) == 3.0
    assert abs_difference_quantile(reference, candidate, 0.99) < 0.5 + 1e-6  # the outlier is the 1%, forgiven
    assert abs_difference_quantile(reference, candidate, 0.25) == 0.0  # the zero end logits are the lower half


def test_outputs_of_other_shapes_or_structure_differ_infinitely():
    reference = (torch.zeros(2, 3), torch.zeros(2, 3))
    assert math.isinf(max_abs_difference(reference, (torch.zeros(2, 3), torch.zeros(3, 2))))
    assert math.isinf(abs_difference_quantile(reference, (torch.zeros(2, 3), torch.zeros(3, 2)), 0.5))
    assert math.isinf(max_abs_difference(reference, (torch.zeros(2, 3),)))
    assert math.isinf(abs_difference_quantile(reference, {"logits": torch.zeros(2, 3)}, 0.5))


def test_outputs_without_tensors_do_not_differ():
    assert max_abs_difference(None, None) == 0.0 and abs_difference_quantile((), (), 0.5) == 0.0
    assert max_abs_difference(torch.ones(3, dtype=torch.bfloat16), torch.ones(3)) == 0.0
