"""Offline text for prompts and perplexity: the contexts of the packaged SQuAD v1.1 dev set, in file order,
tokenized once into one stream. Perplexity windows come from its start, prompts from after them, so no prompt is
scored."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cpu_inference_helpers.qa.data import default_dataset_path, load_squad_file


def squad_contexts(limit: int | None = None) -> list[str]:
    """The distinct contexts of the packaged SQuAD v1.1 dev set, in file order (at most `limit`)."""
    seen: dict[str, None] = {}
    for example in load_squad_file(default_dataset_path()):
        seen.setdefault(example.context, None)
        if limit is not None and len(seen) >= limit:
            break
    return list(seen)


@dataclass
class TokenStream:
    """Token ids of consecutive contexts, with the split between perplexity text and prompt text."""

    ids: torch.Tensor  # 1-D
    scored_tokens: int  # ids[:scored_tokens] are perplexity text

    def perplexity_windows(self, window: int) -> torch.Tensor:
        """The scored text as rows of `window` tokens (W x window)."""
        count = self.scored_tokens // window
        return self.ids[: count * window].view(count, window)

    def prompts(self, prompt_length: int, batch_size: int) -> torch.Tensor:
        """`batch_size` different prompts of exactly `prompt_length` tokens (B x P), after the scored text."""
        start = self.scored_tokens
        needed = start + prompt_length * batch_size
        if needed > self.ids.numel():
            raise ValueError(f"the token stream has {self.ids.numel()} tokens, {needed} are needed")
        return self.ids[start:needed].view(batch_size, prompt_length).clone()


def token_stream(tokenizer: object, scored_tokens: int, prompt_tokens: int) -> TokenStream:
    """Tokenize as many SQuAD dev contexts as `scored_tokens` + `prompt_tokens` need (joined by blank lines)."""
    needed = scored_tokens + prompt_tokens
    pieces: list[int] = []
    limit = 64
    while True:
        contexts = squad_contexts(limit)
        pieces = tokenizer("\n\n".join(contexts), add_special_tokens=False)["input_ids"]
        if len(pieces) >= needed or len(contexts) < limit:
            break
        limit *= 4
    if len(pieces) < needed:
        raise ValueError(f"the SQuAD dev contexts give {len(pieces)} tokens, {needed} are needed")
    return TokenStream(torch.tensor(pieces[:needed], dtype=torch.long), scored_tokens)
