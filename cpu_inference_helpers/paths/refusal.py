"""The options each path honours, and the front door's refusal of an option a path would ignore."""

from __future__ import annotations

from collections.abc import Iterable

from cpu_inference_helpers.modes import AUTO, MODES, ModeSpec
from cpu_inference_helpers.paths.options import OPTIONS
from cpu_inference_helpers.paths.table import PATHS, path_for


def honoured_options(spec: ModeSpec) -> frozenset[str]:
    """The options the path of `spec` honours; for mode "auto", those of any mode at its precision.

    (Any mode, not only the candidates usable in this process: code written for a machine with IPEX, e.g.
    `precision="int8", calibration=batches`, runs unchanged where auto picks another path.)
    """
    if spec.mode == AUTO:
        return frozenset().union(*(path_for(ModeSpec(mode, spec.precision)).honours for mode in MODES))
    return path_for(spec).honours


def refuse_unhonoured(spec: ModeSpec, given: Iterable[str]) -> None:
    """Raise ValueError naming every option in `given` that the path of `spec` would ignore, and who honours it."""
    ignored = sorted(set(given) - honoured_options(spec))
    if not ignored:
        return
    lines = []
    for name in ignored:
        honouring = [path.spec.name for path in PATHS.values() if name in path.honours]
        lines.append(f"{name} ({OPTIONS.get(name, '?')}) is honoured by {', '.join(honouring) or 'no path'}")
    raise ValueError(f"{spec.name} would ignore the option(s) given: " + "; ".join(lines))
