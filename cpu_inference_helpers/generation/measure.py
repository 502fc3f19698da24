"""Measuring generation as generation is measured: time to the first token (the prefill), then decode tokens per
second, per (prompt length, batch size); set-up time and memory; and accuracy against eager fp32 (greedy-token
agreement and perplexity). Paths are timed round-robin per shape so that a shared machine's noise spreads evenly.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from cpu_inference_helpers.generation.paths import REFERENCE, PreparedPath

logger = logging.getLogger(__name__)


@dataclass
class RunTiming:
    """One timed generation: when the first token came, how fast the rest did, and what the compile counter did."""

    ttft_s: float
    decode_s: float  # from the first token to the last
    new_tokens: int
    batch_size: int
    tokens: torch.Tensor = field(repr=False)  # B x new_tokens
    new_graphs: int | None = None  # graphs compiled during the run (compile path)
    graphs_per_token: list[int] | None = None

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens/s summed over the batch after the first token (nan with a single token)."""
        if self.new_tokens < 2 or self.decode_s <= 0:
            return math.nan
        return (self.new_tokens - 1) * self.batch_size / self.decode_s


def timed_generate(path: PreparedPath, input_ids: torch.Tensor, new_tokens: int) -> RunTiming:
    """Run `path` once on `input_ids` for exactly `new_tokens` tokens (eos never picked), timestamping each token."""
    stamps: list[float] = []
    graphs: list[int] = []
    counter = path.compile_count

    def on_token(index: int) -> None:
        stamps.append(time.perf_counter())
        if counter is not None:
            graphs.append(counter())

    before = counter() if counter is not None else None
    start = time.perf_counter()
    tokens = path.generate(input_ids, new_tokens, False, on_token)
    if len(stamps) != tokens.shape[1]:
        raise RuntimeError(f"{path.name}: {tokens.shape[1]} tokens but {len(stamps)} timestamps")
    new_graphs = None if before is None else counter() - before
    return RunTiming(stamps[0] - start, stamps[-1] - stamps[0], tokens.shape[1], tokens.shape[0], tokens,
                     new_graphs, graphs or None)


def warm_up(path: PreparedPath, input_ids: torch.Tensor, new_tokens: int, tokens: int = 3) -> float:
    """A short untimed run with the timed run's cache size (compiles the decode step); returns its seconds."""
    start = time.perf_counter()
    path.generate(input_ids, min(tokens, new_tokens), False, None, capacity=input_ids.shape[1] + new_tokens)
    return time.perf_counter() - start


@dataclass
class ShapeResult:
    """One path at one (prompt length, batch size): medians over the repeats, and agreement with eager fp32."""

    path: str
    ran_as: str
    prompt_length: int
    batch_size: int
    new_tokens: int
    ttft_s: float
    decode_tokens_per_s: float
    warmup_s: float
    repeats: int
    greedy_match: float | None = None  # fraction of generated positions equal to eager fp32's
    first_divergence: int | None = None  # first position (any row) that differs from eager fp32; None: identical
    new_graphs: int | None = None  # compile: graphs compiled during the timed runs (0: nothing recompiled)
    bound_tokens_per_s: float | None = None  # the memory roofline of its decode
    ttft_vs_eager: float | None = None  # eager's TTFT / this TTFT (>1: faster)
    decode_vs_eager: float | None = None  # this decode rate / eager's

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def compare_tokens(tokens: torch.Tensor, reference: torch.Tensor) -> tuple[float, int | None]:
    """(fraction of equal positions, first differing position or None) of two B x n greedy outputs."""
    n = min(tokens.shape[1], reference.shape[1])
    equal = tokens[:, :n] == reference[:, :n]
    differing = (~equal).any(dim=0).nonzero()
    return float(equal.float().mean()), (int(differing[0]) if differing.numel() else None)


def measure_shape(paths: Sequence[PreparedPath], input_ids: torch.Tensor, new_tokens: int, repeats: int = 1
                  ) -> tuple[list[ShapeResult], dict[str, torch.Tensor]]:
    """Warm up every path on this shape, then time `repeats` rounds, each path once per round in a rotating order.

    Returns a result per path (ratios against the reference, the first path, filled in) and each path's greedy tokens.
    """
    batch_size, prompt_length = input_ids.shape
    warmups = {path.name: warm_up(path, input_ids, new_tokens) for path in paths}
    runs: dict[str, list[RunTiming]] = {path.name: [] for path in paths}
    order = list(paths)
    for round_index in tqdm(range(repeats), desc=f"prompt {prompt_length} x batch {batch_size}", leave=False):
        for offset in range(len(order)):
            path = order[(round_index + offset) % len(order)]
            runs[path.name].append(timed_generate(path, input_ids, new_tokens))
    tokens = {name: timings[-1].tokens for name, timings in runs.items()}
    reference = paths[0].name
    results = []
    for path in paths:
        timings = runs[path.name]
        match, divergence = compare_tokens(tokens[path.name], tokens[reference])
        graphs = [t.new_graphs for t in timings if t.new_graphs is not None]
        results.append(ShapeResult(
            path.name, path.ran_as, prompt_length, batch_size, new_tokens,
            statistics.median(t.ttft_s for t in timings), statistics.median(t.decode_tokens_per_s for t in timings),
            warmups[path.name], repeats, match, divergence, sum(graphs) if graphs else None))
    base = results[0]
    for result in results:
        result.ttft_vs_eager = base.ttft_s / result.ttft_s
        result.decode_vs_eager = result.decode_tokens_per_s / base.decode_tokens_per_s
    return results, tokens


def perplexity(logits_fn, windows: torch.Tensor) -> float:
    """exp(mean next-token negative log-likelihood) of `logits_fn` over the rows of `windows` (W x n), one row at a
    time (a window is scored on its own: its first token has no context)."""
    total, count = 0.0, 0
    for row in windows:
        logits = logits_fn(row[None])[0, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits, row[1:], reduction="sum")
        total += float(nll)
        count += row.numel() - 1
    return math.exp(total / count)


def teacher_forced_agreement(logits_fn, reference_fn, sequences: torch.Tensor, prompt_length: int) -> float:
    """Fraction of generated positions of `sequences` (B x (prompt + new)) where the top-1 next token of
    `logits_fn` equals that of `reference_fn`, both reading the same text (no drift compounding)."""
    with torch.inference_mode():
        mine = logits_fn(sequences)[:, prompt_length - 1:-1].argmax(-1)
        theirs = reference_fn(sequences)[:, prompt_length - 1:-1].argmax(-1)
    return float((mine == theirs).float().mean())


@dataclass
class AccuracyResult:
    """A path's accuracy against eager fp32 on offline text."""

    path: str
    perplexity: float | None
    teacher_forced_agreement: float | None
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def measure_accuracy(paths: Sequence[PreparedPath], windows: torch.Tensor, sequences: torch.Tensor,
                     prompt_length: int) -> list[AccuracyResult]:
    """Perplexity on `windows` and teacher-forced top-1 agreement with the reference (the first path) on
    `sequences`, per path; a path without full-sequence logits gets None with the reason."""
    reference = paths[0]
    if reference.name != REFERENCE or reference.logits is None:
        raise ValueError("the first path must be eager fp32, with logits")
    results = []
    for path in tqdm(paths, desc="accuracy", leave=False):
        if path.logits is None:
            results.append(AccuracyResult(path.name, None, None, "no full-sequence logits (its own cache format)"))
            continue
        results.append(AccuracyResult(path.name, perplexity(path.logits, windows),
                                      teacher_forced_agreement(path.logits, reference.logits, sequences,
                                                               prompt_length)))
    return results
