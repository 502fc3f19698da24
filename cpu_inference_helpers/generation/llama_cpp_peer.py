"""The peer: llama.cpp (through `llama-cpp-python`) on the very GGUF file the PyTorch paths dequantized, with the same
prompt tokens, the same thread count and the same greedy rule (eos never picked), timed in the same run.

llama-cpp-python's `Llama` runs one sequence at a time, so the peer is measured at batch 1 only.

llama.cpp repacks weights at load time into "extra buffer types" laid out for the CPU's kernels (AMX tiles on an
Intel Xeon with AMX). On the AMX virtual machines this project runs on, those AMX kernels die with an illegal
instruction (SIGILL, 2026-12-06, llama-cpp-python 0.3.36): the process ends, a Jupyter kernel with it. So before
loading, `extra_buffers_run` generates one token with llama.cpp's defaults in a fresh process; where that dies,
the model loads with `use_extra_bufts=False` (a field of `llama_model_params` that `Llama(...)` silently ignores as
a keyword in 0.3.36, set by `model_params_override`: `Llama.__init__` takes its parameters from
`llama_model_default_params()`, which is wrapped for the call).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.infra.fresh_process import FreshProcessError, run_in_fresh_process

logger = logging.getLogger(__name__)

PEER = "llama.cpp"
INSTALL_HINT = ("pip install 'cpu-inference-tutorial[llm]' (or pip install llama-cpp-python==0.3.36: it builds "
                "llama.cpp from source, about 4 minutes on 2 cores; needs cmake and a C++ compiler)")


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python is installed (without importing it: its import loads the shared library)."""
    return importlib.util.find_spec("llama_cpp") is not None


PROBE_TIMEOUT_S = 300
PROBE_PROMPT_TOKENS = 64
_PROBED: dict[tuple[str, int], bool] = {}


def generate_one_token(gguf_path: str, threads: int) -> str:
    """Load `gguf_path` with llama.cpp's default parameters and greedily generate one token after a prompt of
    `PROBE_PROMPT_TOKENS` tokens (a batch of rows through the matrix kernels, as a prefill; the probe's work)."""
    import llama_cpp

    llm = llama_cpp.Llama(gguf_path, n_ctx=PROBE_PROMPT_TOKENS + 8, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    try:
        prompt = llm.tokenize(b"The capital of France is Paris. " * 16 + b"The capital of France is")
        return llm.create_completion(prompt[-PROBE_PROMPT_TOKENS:], max_tokens=1,
                                     temperature=0.0)["choices"][0]["text"]
    finally:
        llm.close()


def extra_buffers_run(gguf_path: Path, threads: int, probe: Callable[[str, int], object] | None = None) -> bool:
    """Whether llama.cpp's default load (its extra buffer types: weights repacked for this CPU's kernels, AMX tiles
    where the CPU has them) generates a token here. Asked of a fresh process (a load and one token, a few seconds),
    so a kernel that dies with an illegal instruction ends that process only. Any failure there (a signal, an
    exception, `PROBE_TIMEOUT_S` passing) answers False, with the reason logged; the answer is kept per file and
    thread count for this process. `probe` (default `generate_one_token`) must be a module-level function: it runs
    in the fresh process."""
    key = (str(Path(gguf_path).resolve()), threads)
    if key not in _PROBED:
        try:
            run_in_fresh_process(probe or generate_one_token, str(gguf_path), threads, timeout=PROBE_TIMEOUT_S)
            _PROBED[key] = True
        except FreshProcessError as error:
            logger.warning("llama.cpp's default load failed in a fresh process here (%s): loading with "
                           "use_extra_bufts=False, without repacking the weights for this CPU's kernels",
                           error_summary(error, 300))
            _PROBED[key] = False
    return _PROBED[key]


def safe_extra_bufts(gguf_path: Path, threads: int) -> bool | None:
    """`use_extra_bufts` for `model_params_override`: None (llama.cpp's default) where the default load runs here,
    False where it dies."""
    return None if extra_buffers_run(gguf_path, threads) else False


@contextlib.contextmanager
def model_params_override(use_extra_bufts: bool | None) -> Iterator[list[str]]:
    """Inside the block, `Llama(...)` loads with `use_extra_bufts` set; None changes nothing (llama.cpp's default).
    Yields the steps taken, as text.

    `Llama(..., use_extra_bufts=False)` would be accepted and silently ignored (its `**kwargs`), so this replaces the
    module function `llama_cpp.llama_cpp.llama_model_default_params`, which `Llama.__init__` reads, for the block:
    every `Llama` loaded meanwhile, by any thread, gets the setting.
    """
    import llama_cpp.llama_cpp as low_level

    steps: list[str] = []
    if use_extra_bufts is None:
        yield steps
        return
    original = low_level.llama_model_default_params

    def patched():
        params = original()
        params.use_extra_bufts = use_extra_bufts
        return params

    low_level.llama_model_default_params = patched
    steps.append(f"llama_model_params.use_extra_bufts={use_extra_bufts} (set on llama_model_default_params()'s "
                 "struct before the model loads)")
    try:
        yield steps
    finally:
        low_level.llama_model_default_params = original


@dataclass
class PeerResult:
    """llama.cpp at one prompt length, batch 1."""

    path: str
    prompt_length: int
    batch_size: int
    new_tokens: int
    ttft_s: float
    decode_tokens_per_s: float
    load_s: float
    threads: int
    greedy_match: float | None = None
    first_divergence: int | None = None
    ttft_vs_eager: float | None = None
    decode_vs_eager: float | None = None
    bound_tokens_per_s: float | None = None
    ran_as: str = PEER

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class LlamaCppPeer:
    """A loaded llama.cpp model that generates greedily from token ids and times it."""

    def __init__(self, gguf_path: Path, threads: int, context_length: int, use_extra_bufts: bool | None = None,
                 name: str = PEER) -> None:
        if not llama_cpp_available():
            raise ImportError(f"llama-cpp-python is not installed: {INSTALL_HINT}")
        import llama_cpp

        if use_extra_bufts is None:
            use_extra_bufts = safe_extra_bufts(gguf_path, threads)
        self.threads, self.name, self.gguf_path = threads, name, gguf_path
        start = time.perf_counter()
        with model_params_override(use_extra_bufts) as steps:
            self.llm = llama_cpp.Llama(str(gguf_path), n_ctx=context_length, n_batch=min(context_length, 2048),
                                       n_threads=threads, n_threads_batch=threads, verbose=False)
        self.load_s = time.perf_counter() - start
        self.steps = steps + [f"use_extra_bufts in effect: {bool(self.llm.model_params.use_extra_bufts)}"]
        for step in self.steps:
            logger.info("llama.cpp: %s", step)
        self.eos = self.llm.token_eos()
        self.n_vocab = self.llm.n_vocab()
        self._low_level = llama_cpp.llama_cpp

    def _next_token(self) -> int:
        import numpy as np

        logits = np.ctypeslib.as_array(self._low_level.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        logits = logits.copy()
        logits[self.eos] = -np.inf  # as the PyTorch paths: eos is never picked
        return int(logits.argmax())

    def generate(self, prompt: list[int], new_tokens: int) -> tuple[list[int], float, float]:
        """Greedy tokens after `prompt`, with (seconds to the first token, seconds from the first to the last)."""
        self.llm.reset()
        start = time.perf_counter()
        self.llm.eval(prompt)
        tokens = [self._next_token()]
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            self.llm.eval([tokens[-1]])
            tokens.append(self._next_token())
        return tokens, first - start, time.perf_counter() - first

    def measure(self, prompt: torch.Tensor, new_tokens: int, repeats: int = 1) -> tuple[PeerResult, torch.Tensor]:
        """Warm up, then time `repeats` runs on the first row of `prompt` (median); returns the result and tokens."""
        ids = prompt[0].tolist()
        self.generate(ids, min(3, new_tokens))
        runs = [self.generate(ids, new_tokens) for _ in range(repeats)]
        runs.sort(key=lambda run: run[2])
        tokens, ttft, decode = runs[len(runs) // 2]
        rate = (new_tokens - 1) / decode if new_tokens > 1 and decode > 0 else float("nan")
        result = PeerResult(self.name, len(ids), 1, new_tokens, ttft, rate, self.load_s, self.threads,
                            ran_as=f"{PEER} ({self.gguf_path.name})")
        return result, torch.tensor([tokens])

    def close(self) -> None:
        """Free the model."""
        self.llm.close()


def gguf_tensor_bytes(path: Path) -> int:
    """Bytes of all tensors in a GGUF file (the embedding doubles as the output matrix, so all are read per token)."""
    from gguf import GGUFReader

    return int(sum(tensor.n_bytes for tensor in GGUFReader(str(path)).tensors))


def open_peer(gguf_path: Path, threads: int, context_length: int, name: str = PEER,
              use_extra_bufts: bool | None = None) -> LlamaCppPeer | None:
    """The peer, or None with a logged reason (not installed, or it failed to load)."""
    if not llama_cpp_available():
        logger.warning("llama.cpp peer skipped: %s", INSTALL_HINT)
        return None
    try:
        return LlamaCppPeer(gguf_path, threads, context_length, use_extra_bufts, name)
    except Exception as error:
        logger.warning("llama.cpp peer skipped: it failed to load %s: %s", gguf_path.name, error_summary(error, 300))
        return None
