"""The paths the benchmark times: PyTorch modes through `prepare_for_inference`, and the peer runtimes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.modes import ModeSpec

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


def _named(mode: str, precision: str = "fp32", variant: str = "", **fields: Any) -> PathSpec:
    """A PyTorch path named by its `ModeSpec` ("ipex+jit:bf16"), with the variant in brackets or after a space."""
    name = ModeSpec(mode, precision).name + (f" {variant}" if variant else "")
    return PathSpec(name, precision, mode=mode, **fields)


def default_paths() -> list[PathSpec]:
    """Every path the benchmark knows, eager fp32 (SDPA attention) first: the reference."""
    onednn, mkl = (("auto_kernel_selection", True),), (("auto_kernel_selection", False),)
    eager_attention = {"attn_implementation": "eager", "variant": "(eager attention)"}
    paths = [
        _named(REFERENCE),
        _named("eager", **eager_attention),
        _named("jit"),
        _named("ipex", variant="oneDNN", options=onednn),
        _named("ipex+jit", variant="oneDNN", options=onednn),
        _named("ipex+jit", variant="MKL", options=mkl),
        _named("ipex+jit", options=onednn, attn_implementation="eager", variant="oneDNN (eager attention)"),
        _named("compile"),  # static or dynamic shapes, whichever kernel_choice measures faster
        _named("compile", variant="(static shapes)", options=(("dynamic_shapes", False),)),
        _named("compile", variant="(dynamic shapes)", options=(("dynamic_shapes", True),)),
        _named("export"),  # torch.export + AOTInductor package, dynamic batch and sequence
        _named("auto"),
    ]
    for mode in ("eager", "jit", "ipex", "ipex+jit", "compile", "export", "auto"):
        paths.append(_named(mode, "bf16"))
    paths.insert(-2, _named("ipex+jit", "bf16", **eager_attention))
    for mode in ("ipex+jit", "compile"):  # opt-in: fp32 models, matrix products in bf16 (AMX); fp32 elsewhere
        paths.append(_named(mode, "bf32"))
    for mode in ("eager", "ipex+jit", "compile", "export", "auto"):
        paths.append(_named(mode, "int8"))
    paths.insert(-1, _named("ipex+jit", "int8", **eager_attention))
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
    for item in comma_list(text):
        seq, _, batch = item.lower().partition("x")
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
