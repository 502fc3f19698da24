"""The decode roofline: a decode step reads every weight once (and the KV cache so far), so the memory bandwidth
bounds the tokens per second. Bytes per step / bandwidth is the fastest a step can be; a path far below its bound
is overhead-bound (Python, dispatch, small kernels), one near it is memory-bound.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Bandwidth:
    """Measured memory bandwidth in GB/s (1e9 bytes): reading a large tensor (sum) and copying it (read + write)."""

    read_gbps: float
    copy_gbps: float
    megabytes: int
    threads: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def measure_bandwidth(megabytes: int = 512, repeats: int = 5) -> Bandwidth:
    """Best of `repeats` of `x.sum()` (bytes read) and `y.copy_(x)` (bytes read + written) on an fp32 tensor of
    `megabytes` MiB, far larger than any cache, with torch's current thread count."""
    if megabytes < 1 or repeats < 1:
        raise ValueError("megabytes and repeats must be >= 1")
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    nbytes = source.numel() * 4
    source.sum(), target.copy_(source)  # first touch: page faults are not bandwidth
    best_read = best_copy = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        source.sum()
        best_read = min(best_read, time.perf_counter() - start)
        start = time.perf_counter()
        target.copy_(source)
        best_copy = min(best_copy, time.perf_counter() - start)
    return Bandwidth(nbytes / best_read / 1e9, 2 * nbytes / best_copy / 1e9, megabytes, torch.get_num_threads())


def linear_weight_count(model: torch.nn.Module) -> int:
    """Weights of the Linear layers of an (unquantized) model, lm_head included even where it is tied to the
    embedding: a decode step reads all of them, but only one row of the embedding per token."""
    return sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))


def kv_bytes_per_position(config: object, bytes_per_value: float) -> float:
    """Bytes of keys and values one sequence position holds across all layers."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * bytes_per_value


def decode_bytes_per_step(weight_count: int, weight_bits: float, kv_position_bytes: float, batch_size: int,
                          context_length: float) -> float:
    """Bytes one decode step reads: the weights once for the whole batch, plus each row's cache so far."""
    return weight_count * weight_bits / 8 + batch_size * context_length * kv_position_bytes


def bound_tokens_per_second(bytes_per_step: float, bandwidth_gbps: float, batch_size: int) -> float:
    """The memory-bound decode rate, in tokens/s summed over the batch (each step makes `batch_size` tokens)."""
    if bytes_per_step <= 0 or bandwidth_gbps <= 0:
        raise ValueError("bytes per step and bandwidth must be positive")
    return batch_size * bandwidth_gbps * 1e9 / bytes_per_step
