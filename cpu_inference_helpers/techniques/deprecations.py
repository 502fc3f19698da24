"""What upstream deprecated or removed, told once: in the record of a model built with it, and in docs/compatibility.md.

The TorchScript calls (`torch.jit.trace`, `freeze`, `save`, `load`, `script`) warn with a
DeprecationWarning on every call since torch 2.10; the helpers silence that warning where they call
them (`TORCHSCRIPT_DEPRECATION`) and say it once instead, in `record.notes`, with what replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The message of torch's TorchScript DeprecationWarnings (torch 2.10+), as a `warnings` filter pattern.
TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


@dataclass(frozen=True)
class Deprecation:
    """One upstream deprecation: what, since when, what replaces it, and where that is said."""

    what: str
    since: str
    replacement: str
    source: str

    def note(self) -> str:
        return f"deprecated: {self.what} ({self.since}); use {self.replacement} [{self.source}]"


TORCHSCRIPT = Deprecation(
    "torch.jit.trace / script / freeze / save / load (TorchScript)", "torch 2.10 warns on every call",
    "torch.export + AOTInductor (mode 'export') or torch.compile (mode 'compile')",
    "the DeprecationWarning of torch/jit/_trace.py, _freeze.py and _serialization.py in torch 2.13")
IPEX = Deprecation(
    "Intel Extension for PyTorch", "discontinued after 2.8 (for torch 2.8), announced 2025-10-10; repository "
    "archived 2026-03-30", "torch.compile or torch.export on native PyTorch (modes 'compile', 'export'); OpenVINO "
    "as a peer",
    "intel/intel-extension-for-pytorch#867 (the announcement); the archive date as Comfy-Org/ComfyUI#13653 reports it")
JIT_MODE_EVAL = Deprecation(
    "Trainer's --jit_mode_eval", "absent from transformers 5 (5.24 checked; present in 4.56)",
    "--torch_compile", "transformers/training_args.py of 4.56.2 and 5.24.0")
USE_IPEX = Deprecation(
    "Trainer's --use_ipex", "deprecated in transformers 4.x (4.56 warns it goes in 4.54), removed in transformers 5",
    "nothing in the Trainer: prepare the model yourself (prepare_for_inference)",
    "transformers/training_args.py of 4.56.2 and 5.24.0")

ALL = (TORCHSCRIPT, IPEX, JIT_MODE_EVAL, USE_IPEX)


def notes_for(mode: str, applied: list[str]) -> list[str]:
    """The deprecation notes of what a built model uses: TorchScript for traced graphs, IPEX for its paths."""
    notes = []
    if any("torch.jit" in step or "trace" in step for step in applied) and mode in ("jit", "ipex+jit"):
        notes.append(TORCHSCRIPT.note())
    if mode.startswith("ipex") or any("IPEX" in step or "ipex" in step for step in applied):
        notes.append(IPEX.note())
    return notes
