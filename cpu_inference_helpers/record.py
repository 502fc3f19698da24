"""What building a path produced, as data: the one result type (`Built`), its decisions (`Step`), and the
front door's `OptimizationRecord`.

Every building block (`trace_model`, `compile_model`, `optimize_with_ipex`) and every path of the
registry returns a `Built`: the callable to run, the mode and precision it runs as, what was applied,
and each fallback and choice as a `Step` (which step, why), so that code and tests read fields rather
than match substrings. Set-up time is not measured here: the front door measures it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cpu_inference_helpers.modes import AUTO, ModeSpec


@dataclass(frozen=True)
class Step:
    """One decision: the step it belongs to ("jit", "ipex", "compile", "int8", "precision", "auto",
    "kernel", "shapes") and the reason, in words."""

    step: str
    reason: str

    def __str__(self) -> str:
        return f"{self.step}: {self.reason}"


@dataclass
class Built:
    """What a building block or a registry path built.

    `model` is the callable to run (the eager model itself when nothing could be applied); `mode` and
    `precision` say what it runs as; `fallbacks` are the steps that could not be applied, with why.
    """

    model: Callable[..., Any]
    mode: str
    precision: str
    applied: list[str] = field(default_factory=list)
    fallbacks: list[Step] = field(default_factory=list)
    choices: list[Step] = field(default_factory=list)
    traced: bool = False  # a TorchScript graph: runs under the TorchScript-aware autocast context
    frozen: bool = False
    dict_outputs: bool = False  # returns a dict of tensors (an exported package): rebuilt into the eager output type
    warmed_up: bool = False  # the building step already called it `warmup_steps` times
    eager_output_type: type | None = None  # what eager returned, when the check against eager ran

    @property
    def fell_back(self) -> bool:
        """Whether any step could not be applied."""
        return bool(self.fallbacks)

    @property
    def reason(self) -> str | None:
        """The first fallback's reason, or None."""
        return self.fallbacks[0].reason if self.fallbacks else None


@dataclass
class OptimizationRecord:
    """What `prepare_for_inference` was asked for, what runs, what it applied, chose and fell back from."""

    requested_mode: str
    requested_precision: str  # as asked, "auto" included
    mode: str
    precision: str  # what the calls run as: fp32, bf16, bf32 or int8
    applied: list[str] = field(default_factory=list)
    fallbacks: list[Step] = field(default_factory=list)
    choices: list[Step] = field(default_factory=list)  # what "auto" and the measured choices decided, and why
    setup_seconds: float = 0.0  # the whole preparation, measured once by the front door
    notes: list[str] = field(default_factory=list)  # upstream deprecations of what runs (`techniques.deprecations`)

    @property
    def fell_back(self) -> bool:
        return bool(self.fallbacks)

    @property
    def ran(self) -> ModeSpec:
        """What ran, as a `ModeSpec`."""
        return ModeSpec(self.mode, self.precision)

    @property
    def ran_as(self) -> str:
        """What ran, as the CLIs name modes: "jit", "ipex+jit:bf16"; "auto -> ..." when auto chose it."""
        return f"auto -> {self.ran.name}" if self.requested_mode == AUTO else self.ran.name

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy: steps as {"step", "reason"} objects."""
        return {
            "requested_mode": self.requested_mode, "requested_precision": self.requested_precision,
            "mode": self.mode, "precision": self.precision, "ran_as": self.ran_as, "applied": list(self.applied),
            "fallbacks": [vars(step) for step in self.fallbacks], "choices": [vars(step) for step in self.choices],
            "setup_seconds": self.setup_seconds, "fell_back": self.fell_back, "notes": list(self.notes),
        }

    def summary(self) -> str:
        """A few lines for people: requested, running, applied, set-up time, then each choice and fallback."""
        text = (
            f"requested {self.requested_mode}/{self.requested_precision}, "
            f"running {self.mode}/{self.precision} ({', '.join(self.applied) or 'nothing applied'}; "
            f"setup {self.setup_seconds:.2f} s)"
        )
        text += "".join(f"\n  choice: {step}" for step in self.choices)
        text += "".join(f"\n  fallback: {step}" for step in self.fallbacks)
        return text + "".join(f"\n  note: {note}" for note in self.notes)
