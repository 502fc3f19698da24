"""The signal a builder gives when it cannot apply its technique: the table then builds the declared fallback.

A builder never builds another path itself. It raises `PathUnavailable` with the `Step`s saying why (they go
in front of the fallback's own steps in the record) and the kind of failure, which picks the fallback when an
entry declares one per kind (`table.PathBuilder.fallback_on`).
"""

from __future__ import annotations

from cpu_inference_helpers.record import Built, Step

#: Any failure: the entry's default fallback (`PathBuilder.fallback`).
ANY_FAILURE = "any"
#: IPEX could not be imported or applied (ipex+jit falls back to jit).
IPEX_UNUSABLE = "ipex unusable"
#: ipex.optimize worked but tracing its model failed (ipex+jit falls back to ipex).
TRACE_FAILED = "trace failed"


class PathUnavailable(Exception):
    """A path could not apply its technique.

    Args:
        steps: why, one `Step` per thing that could not be applied (at least one).
        kind: which declared fallback applies (`ANY_FAILURE`, `IPEX_UNUSABLE`, `TRACE_FAILED`).
        salvaged: the fallback entry's result when the work done so far already is it (ipex.optimize's model
            when only the trace of ipex+jit failed), so that the table does not build it a second time.
    """

    def __init__(self, *steps: Step, kind: str = ANY_FAILURE, salvaged: Built | None = None):
        if not steps:
            raise ValueError("a path that is unavailable says why: give at least one Step")
        super().__init__("; ".join(str(step) for step in steps))
        self.steps = steps
        self.kind = kind
        self.salvaged = salvaged
