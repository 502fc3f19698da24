"""Greedy decoding written out: one prefill call on the prompt, then one decode step per new token on a KV cache.

The loop is ours rather than `model.generate`'s so that each step can be timed, a compiled decode step can be
reused across tokens (a static cache: the same shapes at every step), and the compile counter can be read at every
token. Every row of a batch has the same prompt length (no padding), so no attention mask is needed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

#: One model call: (input ids (B x n), cache, cache positions (n,)) -> logits of the last position (B x 1 x vocab).
StepFn = Callable[[torch.Tensor, object, torch.Tensor], torch.Tensor]
#: Called after each new token with its index (0 = the token the prefill produced).
TokenHook = Callable[[int], None]


def cache_argument(model: torch.nn.Module) -> str:
    """The name `forward` takes the KV cache by: `cache` (transformers >= 5.2x, which deprecates the old name) or
    `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def model_step(model: torch.nn.Module) -> StepFn:
    """The step function of a Hugging Face causal LM: logits of the last position only (`logits_to_keep=1`)."""
    name = cache_argument(model)

    def step(input_ids: torch.Tensor, cache: object, cache_position: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, cache_position=cache_position, use_cache=True, logits_to_keep=1,
                     **{name: cache}).logits

    return step


def dynamic_cache(model: torch.nn.Module, batch_size: int, max_length: int) -> object:
    """A cache that grows by one position per token (transformers' default)."""
    from transformers import DynamicCache

    return DynamicCache()


def static_cache(model: torch.nn.Module, batch_size: int, max_length: int) -> object:
    """A cache allocated once for `max_length` positions: every decode step sees the same tensor shapes."""
    from transformers import StaticCache

    try:  # transformers >= 4.56: the batch size and dtype come from the first update
        return StaticCache(config=model.config, max_cache_len=max_length)
    except TypeError:  # older signature
        dtype = next(model.parameters()).dtype
        return StaticCache(config=model.config, max_batch_size=batch_size, max_cache_len=max_length, dtype=dtype)


def greedy_decode(prefill: StepFn, decode: StepFn, input_ids: torch.Tensor, max_new_tokens: int, cache: object,
                  eos_token_id: int | None = None, stop_at_eos: bool = False,
                  on_token: TokenHook | None = None) -> torch.Tensor:
    """Greedy tokens (B x n, n <= max_new_tokens) after `input_ids` (B x prompt).

    Args:
        prefill: the step run once on the whole prompt.
        decode: the step run on each new token (may be a compiled function).
        cache: an empty (or reset) KV cache with room for prompt + max_new_tokens positions.
        eos_token_id: the end-of-sequence token.
        stop_at_eos: True: stop once every row produced it (a chat answer). False: never pick it (its logit is set to
            -inf, llama.cpp's `ignore_eos`), so exactly `max_new_tokens` are generated: what a benchmark measures.
        on_token: called after each new token, e.g. to timestamp it.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, not {max_new_tokens}")
    prompt_length = input_ids.shape[1]
    tokens = []
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool)
    with torch.inference_mode():
        logits = prefill(input_ids, cache, torch.arange(prompt_length))
        for index in range(max_new_tokens):
            last = logits[:, -1, :].float()
            if eos_token_id is not None and not stop_at_eos:
                last[:, eos_token_id] = -float("inf")
            next_tokens = last.argmax(dim=-1)
            if stop_at_eos and eos_token_id is not None:
                next_tokens = torch.where(finished, torch.full_like(next_tokens, eos_token_id), next_tokens)
                finished |= next_tokens == eos_token_id
            tokens.append(next_tokens)
            if on_token is not None:
                on_token(index)
            if index == max_new_tokens - 1 or bool(finished.all()):
                break
            logits = decode(next_tokens[:, None], cache, torch.tensor([prompt_length + index]))
    return torch.stack(tokens, dim=1)
