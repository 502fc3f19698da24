"""The one last-batch policy: fixed-size batches, the short last one padded, the real rows counted."""

import pytest
import torch

from cpu_inference_helpers.infra.batching import fixed_size_batches


def test_every_batch_has_the_batch_size_and_the_last_is_padded_with_its_last_row():
    inputs = {"input_ids": torch.arange(10).reshape(5, 2), "attention_mask": torch.ones(5, 2, dtype=torch.long)}
    batches = fixed_size_batches(inputs, 4)
    assert [real for _, real in batches] == [4, 1]
    assert all(batch[name].shape == (4, 2) for batch, _ in batches for name in inputs)
    padded = batches[1][0]["input_ids"]
    assert padded.tolist() == [[8, 9]] * 4  # the one real row, repeated
    rejoined = torch.cat([batch["input_ids"][:real] for batch, real in batches])
    assert torch.equal(rejoined, inputs["input_ids"])


def test_an_exact_multiple_is_not_padded():
    inputs = {"input_ids": torch.arange(8).reshape(4, 2)}
    assert [real for _, real in fixed_size_batches(inputs, 2)] == [2, 2]


@pytest.mark.parametrize(("rows", "size", "message"), [(3, 0, "at least 1"), (0, 2, "no windows")])
def test_bad_batching_is_refused(rows, size, message):
    with pytest.raises(ValueError, match=message):
        fixed_size_batches({"input_ids": torch.zeros(rows, 2)}, size)
