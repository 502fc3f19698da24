"""Trained weights into the shipped format: fp16 safetensors of what training changed, and a manifest with hashes.

Loading (and the hash checks) is `shipped_checkpoint`'s; this is the writing half, used by the trainer's
snapshots and its export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import BertForQuestionAnswering

from cpu_inference_helpers.infra.output_files import atomic_file
from cpu_inference_helpers.shipped_checkpoint import (
    BASE_DISTRIBUTION,
    BASE_WEIGHTS_SHA256,
    FROZEN_PARAMETERS,
    MANIFEST_FILE,
    SHIPPED_MODEL_NAME,
    WEIGHTS_FILE,
    file_sha256,
)


def save_trained_weights(model: BertForQuestionAnswering, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the weights training changes (all but the frozen ones) as fp16 safetensors, atomically."""
    state = {
        name: tensor.detach().to(torch.float16).contiguous()
        for name, tensor in model.state_dict().items()
        if name not in FROZEN_PARAMETERS and tensor.is_floating_point()
    }
    with atomic_file(path) as temporary:
        save_file(state, str(temporary), metadata={"format": "pt", **(metadata or {})})
    return path


def export_shipped_weights(model: BertForQuestionAnswering, folder: Path, metadata: dict[str, Any]) -> Path:
    """Write the trained (non-frozen) weights as fp16 safetensors plus a manifest with hashes.

    `metadata` (hyper-parameters, data, cost) goes into the manifest unchanged.
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights_path = save_trained_weights(model, folder / WEIGHTS_FILE)
    manifest = {
        "name": SHIPPED_MODEL_NAME,
        "base": BASE_DISTRIBUTION,
        "base_weights_sha256": BASE_WEIGHTS_SHA256,
        "frozen_from_base": list(FROZEN_PARAMETERS),
        "weights_sha256": file_sha256(weights_path),
        "dtype": "float16",
        "config": model.config.to_diff_dict(),
        **metadata,
    }
    with atomic_file(folder / MANIFEST_FILE) as partial:
        partial.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return weights_path
