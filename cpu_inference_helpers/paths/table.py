"""Every path in one table: a builder per (mode, precision), the options it honours, and its fallback as data.

    PATHS[ModeSpec("ipex+jit", "bf16")].build(request) -> Built

A builder applies its technique or raises `PathUnavailable`; `build_path`, the one loop, then builds the
entry's declared fallback (per failure kind where an entry declares several) and puts the unavailable
entries' `Step`s in front of what the fallback built. The declared chains:

    ipex+jit -> jit (IPEX unusable) or ipex (trace failed);  ipex -> eager;  jit -> eager;  compile -> eager
    export -> eager (export refused the model, or AOTInductor failed)
    ipex+jit:int8 -> jit:int8;  ipex:int8 -> eager:int8;  compile:int8 -> eager:int8;  jit:int8 -> eager:int8;
    export:int8 -> eager:int8;  eager:int8 -> eager fp32 (no quantized engine)

Every chain ends at an eager floating-point entry, the ones that cannot fail (checked when the table is made).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from cpu_inference_helpers.modes import MODES, ModeSpec
from cpu_inference_helpers.paths import float_builders, int8_builders
from cpu_inference_helpers.paths.options import BuildRequest
from cpu_inference_helpers.paths.unavailable import TRACE_FAILED, PathUnavailable
from cpu_inference_helpers.record import Built
from cpu_inference_helpers.techniques.dtypes import BF32, INT8, PRECISION_DTYPES

logger = logging.getLogger(__name__)

#: The floating-point precisions, each with the same six modes.
FLOAT_PRECISIONS = (*PRECISION_DTYPES, BF32)


@dataclass(frozen=True)
class PathBuilder:
    """One entry of the table: what it builds (`attempt`, which may raise `PathUnavailable`), which options it
    honours, and what the table builds instead when it is unavailable: `fallback_on[kind]` for a failure kind
    it names, `fallback` for any other (None: the entry cannot fail)."""

    spec: ModeSpec
    attempt: Callable[[BuildRequest], Built]
    honours: frozenset[str]
    summary: str
    fallback: ModeSpec | None = None
    fallback_on: Mapping[str, ModeSpec] = field(default_factory=dict, compare=False)

    def fallback_for(self, kind: str) -> ModeSpec | None:
        """The entry the table builds when this one is unavailable for a failure of `kind`."""
        return self.fallback_on.get(kind, self.fallback)

    def fallback_targets(self) -> set[ModeSpec]:
        """Every entry this one may fall back to, whatever the failure."""
        return {target for target in (self.fallback, *self.fallback_on.values()) if target is not None}

    def build(self, request: BuildRequest) -> Built:
        """Build this path, or the declared fallbacks with the steps saying why (`build_path`)."""
        return build_path(self.spec, request)


def build_path(spec: ModeSpec, request: BuildRequest) -> Built:
    """Build the entry of `spec`; while an entry is unavailable, build its declared fallback instead.

    The unavailable entries' steps go, in the order met, in front of the built path's own fallbacks. A
    `PathUnavailable` that salvages the fallback's result (work already done) ends the walk with it.
    """
    entry, steps = path_for(spec), []
    while True:
        try:
            built = entry.attempt(request)
            break
        except PathUnavailable as unavailable:
            target = entry.fallback_for(unavailable.kind)
            if target is None:
                raise RuntimeError(f"{entry.spec.name} declares no fallback but was unavailable: {unavailable}") \
                    from unavailable
            logger.info("%s unavailable (%s), building %s", entry.spec.name, unavailable, target.name)
            steps += unavailable.steps
            if unavailable.salvaged is not None:
                built = unavailable.salvaged
                break
            entry = path_for(target)
    built.fallbacks[:0] = steps
    return built


def fallback_chains(spec: ModeSpec) -> Iterator[list[ModeSpec]]:
    """Every declared fallback chain from `spec`, each ending at an entry that declares no fallback.

    Raises ValueError on a cycle or a fallback that is not in the table.
    """
    def walk(chain: list[ModeSpec]) -> Iterator[list[ModeSpec]]:
        targets = PATHS[chain[-1]].fallback_targets()
        if not targets:
            yield chain
        for target in sorted(targets, key=lambda found: found.name):
            if target not in PATHS:
                raise ValueError(f"{chain[-1].name} falls back to {target.name}, which is not in the table")
            if target in chain:
                raise ValueError("fallback cycle: " + " -> ".join(s.name for s in [*chain, target]))
            yield from walk([*chain, target])

    yield from walk([spec])


_BASIC = frozenset({"warmup_steps"})
_GRAPH = frozenset({"freeze", "warmup_steps", "verify"})
_EXPORT = _GRAPH | {"dynamic_shapes", "package_path"}
_CALIBRATED = frozenset({"calibration", "smooth_quant_alpha"})
_STATIC_INT8 = frozenset({"freeze", "warmup_steps"}) | _CALIBRATED


def _float_entries(precision: str) -> list[PathBuilder]:
    kernel = frozenset({"auto_kernel_selection"}) if precision == "fp32" else frozenset()
    emulated = frozenset({"allow_emulated_bf16"}) if precision == "bf16" else frozenset()
    eager, jit, ipex = (ModeSpec(mode, precision) for mode in ("eager", "jit", "ipex"))
    return [
        PathBuilder(eager, float_builders.eager_builder(precision), _BASIC | emulated, "the model as it is"),
        PathBuilder(jit, float_builders.jit_builder(precision), _GRAPH | emulated, "TorchScript trace + freeze",
                    fallback=eager),
        PathBuilder(ipex, float_builders.ipex_builder(precision), _BASIC | kernel | emulated, "ipex.optimize",
                    fallback=eager),
        PathBuilder(ModeSpec("ipex+jit", precision), float_builders.ipex_jit_builder(precision),
                    _GRAPH | kernel | emulated, "ipex.optimize + trace + freeze (IPEX's fused graph)",
                    fallback=jit, fallback_on={TRACE_FAILED: ipex}),
        PathBuilder(ModeSpec("compile", precision), float_builders.compile_builder(precision),
                    _GRAPH | {"dynamic_shapes"} | emulated, "torch.compile (Inductor, freezing)", fallback=eager),
        PathBuilder(ModeSpec("export", precision), float_builders.export_builder(precision), _EXPORT | emulated,
                    "torch.export + AOTInductor package (loads in Python or C++)", fallback=eager),
    ]


def _int8_entries() -> list[PathBuilder]:
    eager, jit = ModeSpec("eager", INT8), ModeSpec("jit", INT8)
    return [
        PathBuilder(eager, int8_builders.eager_int8, _BASIC, "PyTorch's dynamic int8 Linear",
                    fallback=ModeSpec("eager", "fp32")),
        PathBuilder(jit, int8_builders.jit_int8, _GRAPH, "dynamic int8 Linear, traced + frozen", fallback=eager),
        PathBuilder(ModeSpec("ipex", INT8), int8_builders.ipex_int8, _BASIC, "none of its own: eager:int8",
                    fallback=eager),
        PathBuilder(ModeSpec("ipex+jit", INT8), int8_builders.ipex_jit_int8, _STATIC_INT8,
                    "IPEX static int8 with SmoothQuant, traced + frozen (no eager reference to verify against)",
                    fallback=jit),
        PathBuilder(ModeSpec("compile", INT8), int8_builders.compile_int8, _GRAPH | _CALIBRATED,
                    "PT2E int8 (X86InductorQuantizer; static activations with SmoothQuant given calibration, else "
                    "dynamic), torch.compile", fallback=eager),
        PathBuilder(ModeSpec("export", INT8), int8_builders.export_int8, _EXPORT,
                    "torchao int8 dynamic activations + int8 weights, torch.export + AOTInductor package",
                    fallback=eager),
    ]


def _table() -> dict[ModeSpec, PathBuilder]:
    entries = [entry for precision in FLOAT_PRECISIONS for entry in _float_entries(precision)] + _int8_entries()
    return {entry.spec: entry for entry in entries}


#: Every concrete path, keyed by `ModeSpec(mode, precision)`.
PATHS: dict[ModeSpec, PathBuilder] = _table()


def path_for(spec: ModeSpec) -> PathBuilder:
    """The table's entry for a concrete spec; a ValueError for "auto" or an unknown pair."""
    if spec not in PATHS:
        raise ValueError(f"no path for {spec.name!r}: modes {', '.join(MODES)} in precisions "
                         f"{', '.join(sorted({s.precision for s in PATHS}))}")
    return PATHS[spec]


def _check_the_declared_chains() -> None:
    """Every chain ends at an eager floating-point entry, without cycles: a ValueError when the table is made."""
    for spec in PATHS:
        for chain in fallback_chains(spec):
            if chain[-1].mode != "eager" or chain[-1].precision == INT8:
                raise ValueError(f"{spec.name}'s fallback chain ends at {chain[-1].name}, which may fail")


_check_the_declared_chains()
