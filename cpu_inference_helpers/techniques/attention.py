"""Switching a transformers model's attention implementation ("sdpa" or "eager") after loading.

SDPA (PyTorch's fused scaled-dot-product attention, the successor of BetterTransformer) is
the best choice in eager mode. IPEX's graph fusion, however, recognises the *eager*
attention pattern (matmul, scale, add mask, softmax, matmul) and replaces it with its own
fused multi-head-attention kernel, while it leaves an SDPA call as is: under IPEX + jit,
eager attention is the faster input at most shapes measured (docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import logging

import torch

logger = logging.getLogger(__name__)


def attention_implementation(model: torch.nn.Module) -> str | None:
    """The attention implementation of a transformers model ("sdpa", "eager" ...), None for other modules."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) if config is not None else None


def with_attention_implementation(model: torch.nn.Module, implementation: str) -> torch.nn.Module:
    """A model computing the same function as `model` with another attention implementation.

    Returns `model` itself when it already uses `implementation` or is not a transformers model.
    Otherwise builds the same architecture from a copy of its config with the requested
    attention and gives it `model`'s weights (shared, not copied); `model` is left unchanged.
    This works on every transformers version, also for models that cannot switch in place.
    """
    current = attention_implementation(model)
    if current is None or current == implementation:
        return model
    config = copy.deepcopy(model.config)
    with torch.random.fork_rng(devices=[]):  # the throw-away initialisation must not move the user's RNG
        switched = type(model)._from_config(config, attn_implementation=implementation)
    switched.load_state_dict(model.state_dict(), assign=True)
    if hasattr(switched, "tie_weights"):
        switched.tie_weights()  # assign=True replaced tied parameters one by one
    switched.train(model.training)
    logger.info("rebuilt %s with %s attention (was %s)", type(model).__name__, implementation, current)
    return switched
