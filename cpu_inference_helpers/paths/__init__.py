"""The table of paths, split by job; `cpu_inference_helpers.registry` re-exports the public names.

- `options`: the option catalogue (`OPTIONS`), `BuildOptions` and `BuildRequest`.
- `unavailable`: `PathUnavailable`, the signal a builder raises when it cannot apply its technique.
- `float_builders`, `int8_builders`: what each (mode, precision) does when its technique applies.
- `table`: the entries (`PathBuilder`: builder, options honoured, fallback declared as data), `PATHS`, and
  the one loop (`build_path`) that walks a declared fallback chain.
- `refusal`: the options each path honours, and the front door's refusal of the others.
- `auto_policy`: the modes `auto` tries, in order, and the attention implementations it measures.
- `precision_policy`: every precision decision and fallback (precision "auto", bf16 without native bf16,
  bf32 without AMX, on export, or where a path's kernels ignore it).
"""
