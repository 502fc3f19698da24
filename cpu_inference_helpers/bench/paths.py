"""The paths the benchmark times: PyTorch modes through `prepare_for_inference`, and the peer runtimes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFERENCE = "eager"


@dataclass(frozen=True)
class PathSpec:
    """One way to run the model: a PyTorch mode through `prepare_for_inference`, or a peer runtime."""

    name: str
    precision: str = "fp32"
    mode: str | None = None  # prepare_for_inference mode; None for peers
    peer: str | None = None
    attn_implementation: str = "sdpa"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def family(self) -> str:
        return "peer" if self.peer else "pytorch"


def default_paths() -> list[PathSpec]:
    """Every path the benchmark knows, eager fp32 (SDPA attention) first: the reference."""
    onednn, mkl = (("auto_kernel_selection", True),), (("auto_kernel_selection", False),)
    paths = [
        PathSpec(REFERENCE, mode="eager"),
        PathSpec("eager (eager attention)", mode="eager", attn_implementation="eager"),
        PathSpec("jit", mode="jit"),
        PathSpec("ipex oneDNN", mode="ipex", options=onednn),
        PathSpec("ipex+jit oneDNN", mode="ipex+jit", options=onednn),
        PathSpec("ipex+jit MKL", mode="ipex+jit", options=mkl),
        PathSpec("ipex+jit oneDNN (eager attention)", mode="ipex+jit", attn_implementation="eager", options=onednn),
        PathSpec("compile", mode="compile"),  # static or dynamic shapes, whichever kernel_choice measures faster
        PathSpec("compile (static shapes)", mode="compile", options=(("dynamic_shapes", False),)),
        PathSpec("compile (dynamic shapes)", mode="compile", options=(("dynamic_shapes", True),)),
        PathSpec("auto", mode="auto"),
    ]
    for mode in ("eager", "jit", "ipex", "ipex+jit", "compile", "auto"):
        paths.append(PathSpec(f"{mode}:bf16", "bf16", mode=mode))
    paths.insert(-2, PathSpec("ipex+jit:bf16 (eager attention)", "bf16", mode="ipex+jit", attn_implementation="eager"))
    for mode in ("ipex+jit", "compile"):  # opt-in: fp32 models, matrix products in bf16 (AMX); fp32 elsewhere
        paths.append(PathSpec(f"{mode}:bf32", "bf32", mode=mode))
    for mode in ("eager", "ipex+jit", "compile", "auto"):
        paths.append(PathSpec(f"{mode}:int8", "int8", mode=mode))
    paths.insert(-1, PathSpec("ipex+jit:int8 (eager attention)", "int8", mode="ipex+jit", attn_implementation="eager"))
    paths += [
        PathSpec("onnxruntime", peer="onnxruntime"),
        PathSpec("openvino", peer="openvino"),
        PathSpec("openvino:bf16", "bf16", peer="openvino"),
        PathSpec("openvino:int8", "int8", peer="openvino"),
    ]
    return paths


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """Parse "384x1,128x8" into (sequence length, batch size) pairs."""
    shapes = []
    for item in text.split(","):
        seq, _, batch = item.strip().lower().partition("x")
        try:
            shape = (int(seq), int(batch))
        except ValueError:
            raise ValueError(f"bad shape {item!r}: write SEQxBATCH, e.g. 384x1") from None
        if min(shape) < 1 or shape[0] < 16:
            raise ValueError(f"bad shape {item!r}: sequence length >= 16 and batch >= 1")
        shapes.append(shape)
    if not shapes:
        raise ValueError("no shape given")
    return shapes
