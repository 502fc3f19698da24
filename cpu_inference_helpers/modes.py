"""The mode grammar, parsed in one place: "ipex+jit", "ipex_jit:bf16", "auto:int8" -> `ModeSpec`.

A mode names the techniques of the classic "Efficient Inference on CPU" guide (`eager`, `jit`,
`ipex`, `ipex+jit`), their modern successors (`compile`; `export`, torch.export + AOTInductor),
or `auto`; a precision is one of
`dtypes.PRECISIONS`. Every CLI, table, output folder and benchmark path name is derived from a
`ModeSpec`, never parsed back from a display string.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.techniques.dtypes import precision_name

MODES = ("eager", "jit", "ipex", "ipex+jit", "compile", "export")
AUTO = "auto"
FP32 = "fp32"


def parse_mode(mode: str) -> str:
    """Normalise a mode name ("ipex_jit", "IPEX+JIT", "jit+ipex" ...), with a clear error for unknown ones."""
    if not isinstance(mode, str):
        raise ValueError(f"a mode is a name, not {type(mode).__name__}: choose one of {', '.join(MODES)} or {AUTO}")
    normalised = mode.strip().lower().replace("_", "+").replace("-", "+")
    if normalised == "jit+ipex":
        normalised = "ipex+jit"
    if normalised not in (*MODES, AUTO):
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)} or {AUTO}")
    return normalised


@dataclass(frozen=True)
class ModeSpec:
    """A mode and a precision: what to build, or what ran. Named like "ipex+jit" (fp32) or "ipex+jit:bf16"."""

    mode: str
    precision: str = FP32

    @property
    def name(self) -> str:
        """The display name: the mode alone for fp32, "mode:precision" otherwise."""
        return self.mode if self.precision == FP32 else f"{self.mode}:{self.precision}"

    @property
    def folder(self) -> str:
        """The output sub-folder of this mode ("ipex+jit:bf16" -> "ipex+jit-bf16")."""
        return self.name.replace(":", "-")

    @classmethod
    def parse(cls, text: str) -> ModeSpec:
        """Parse "mode" or "mode:precision" (precision defaults to fp32); a ValueError names what is accepted."""
        mode, _, precision = text.strip().partition(":")
        return cls(parse_mode(mode), precision_name(precision or FP32))


def parse_mode_list(text: str) -> list[ModeSpec]:
    """Parse "eager,jit,ipex+jit:bf16" into specs; an empty list or a duplicate is an error."""
    specs = [ModeSpec.parse(item) for item in comma_list(text)]
    if not specs:
        raise ValueError("the mode list names no mode")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"the mode list names a mode twice: {', '.join(names)}")
    return specs
