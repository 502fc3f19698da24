"""The table of paths and `auto`'s policy over it: one import for the names the rest of the package uses.

    PATHS[ModeSpec("ipex+jit", "bf16")].build(request) -> Built

The work is split by job in `cpu_inference_helpers.paths`: the option catalogue (`paths.options`), the
builders (`paths.float_builders`, `paths.int8_builders`), the table with each entry's fallback declared as
data and the one loop that walks it (`paths.table`), the refusal of options a path would ignore
(`paths.refusal`), `auto`'s plan (`paths.auto_policy`), and every precision fallback
(`paths.precision_policy`, imported by the front door).
"""

from cpu_inference_helpers.paths.auto_policy import (
    LONG_RUNNING,
    SHORT_LIVED,
    auto_attention_candidates,
    auto_contenders,
    auto_plan,
)
from cpu_inference_helpers.paths.options import OPTIONS, Batch, BuildOptions, BuildRequest
from cpu_inference_helpers.paths.refusal import honoured_options, refuse_unhonoured
from cpu_inference_helpers.paths.table import (
    FLOAT_PRECISIONS,
    PATHS,
    PathBuilder,
    build_path,
    fallback_chains,
    path_for,
)
from cpu_inference_helpers.paths.unavailable import PathUnavailable
from cpu_inference_helpers.techniques.capabilities import inductor_compiler_available

__all__ = [
    "FLOAT_PRECISIONS", "LONG_RUNNING", "OPTIONS", "PATHS", "SHORT_LIVED", "Batch", "BuildOptions", "BuildRequest",
    "PathBuilder", "PathUnavailable", "auto_attention_candidates", "auto_contenders", "auto_plan", "build_path",
    "fallback_chains", "honoured_options", "inductor_compiler_available", "path_for", "refuse_unhonoured",
]
