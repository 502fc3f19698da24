"""`auto`'s policy over the table: which modes it tries, fastest first, and which attentions it measures.

What this CPU and stack can do is read from the report it is given (`CpuCapabilities`: its C++ compiler)
and from IPEX's probe; the precision `auto` runs in is `precision_policy`'s.
"""

from __future__ import annotations

from cpu_inference_helpers.techniques.capabilities import CpuCapabilities, cached_capabilities
from cpu_inference_helpers.techniques.dtypes import INT8
from cpu_inference_helpers.techniques.ipex_support import probe_ipex

#: The process lifetimes `auto_plan` plans for.
LONG_RUNNING, SHORT_LIVED = "long-running", "short-lived"


def auto_plan(process: str = LONG_RUNNING, capabilities: CpuCapabilities | None = None) -> list[tuple[str, str]]:
    """The modes `auto` tries, fastest first, each with the reason it is there.

    A long-running process (the default, what `prepare_for_inference(mode="auto")` plans for) pays set-up
    once and then wants the fastest calls. The order comes from `python -m cpu_inference_helpers.bench`
    (docs/): with IPEX, ipex.optimize + trace + freeze runs BERT as fused oneDNN kernels (fp32 GEMMs on MKL or
    oneDNN, whichever `kernel_choice` measures faster here); without IPEX, torch.compile's Inductor with
    weight freezing also packs the weights for oneDNN; torch.export + AOTInductor builds the same kernels
    ahead of time (tried when compile fell back); TorchScript jit needs no compiler; eager always works.
    The compiled modes are planned where the report (`capabilities`, this machine's when omitted) found
    Inductor's C++ compiler. Where the plan's first working mode is one of `auto_contenders` (fp32: ipex+jit
    and compile), the others are built too and the one timed faster at the example's shape runs.

    A short-lived process (a batch job, a serverless call) pays set-up every time: compiling (compile,
    export) costs it tens of seconds (`python -m cpu_inference_helpers.bench.cold_start`, docs/deployment.md),
    so the plan there is jit then eager, and the advice is to build a package once (mode "export",
    `package_path=`) and load it in each process with `load_prepared`.
    """
    if process not in (LONG_RUNNING, SHORT_LIVED):
        raise ValueError(f"process must be {LONG_RUNNING!r} or {SHORT_LIVED!r}, not {process!r}")
    if process == SHORT_LIVED:
        return [("jit", "a short-lived process pays set-up each time: trace + freeze prepares in about a second, "
                        "where compiling takes tens of seconds (better still: load a saved export package)"),
                ("eager", "no faster path applied")]
    caps = capabilities or cached_capabilities()
    plan = []
    ipex = probe_ipex()
    if ipex.usable:
        plan.append(("ipex+jit", "IPEX is usable: ipex.optimize + trace + freeze runs fused graphs "
                                 "(fp32: on the faster of MKL and oneDNN, measured here)"))
    if caps.inductor_compiler_available:
        why = "the next best path" if plan else f"IPEX is not usable ({ipex.reason}); this is"
        plan.append(("compile", f"{why}: torch.compile (Inductor with weight freezing)"))
        plan.append(("export", "torch.export + AOTInductor: Inductor's kernels compiled ahead of time into a package"))
    plan.append(("jit", "TorchScript trace + freeze, which needs no C++ compiler"))
    plan.append(("eager", "no faster path applied"))
    return plan


def auto_attention_candidates(mode: str, precision: str) -> tuple[str, ...]:
    """The attention implementations `auto` measures for `mode` at `precision` when the caller names none.

    ipex+jit in bf16 and int8: IPEX fuses the eager attention pattern (not SDPA) into its multi-head-attention
    kernel and quantizes its matmuls in int8, which wins at batch 1; at batch 8 on an Intel Xeon with AMX, SDPA
    won (598 vs 381 ms per call in bf16, issue 31, 2026-12-03). So both are built and timed at the example's
    shape, and the faster runs. Empty (keep the model's attention) for other paths: in fp32 SDPA is as fast or
    faster, and the other modes have no fused eager-attention kernel.
    """
    return ("sdpa", "eager") if mode == "ipex+jit" and precision in ("bf16", INT8) else ()


def auto_contenders(planned: list[str], precision: str) -> tuple[str, ...]:
    """The planned modes `auto` builds and times against each other at the example's shape, keeping the faster.

    fp32 with both ipex+jit and compile planned: neither wins everywhere. On an Intel Xeon with AMX (legacy
    stack, random-bert-base, 2026-12-06, docs/benchmarks.md) ipex+jit MKL and compile tied at seq 384 batch 1
    (223 ms each) and compile led at batch 8 (1521 against 1599-1645 ms), where `auto`, taking ipex+jit
    unmeasured, ran 1.07x slower than the best. Elsewhere the plan's first mode that builds runs, untimed: in
    bf16 and int8 the attention is what is measured (`auto_attention_candidates`).
    """
    if precision == "fp32" and "ipex+jit" in planned and "compile" in planned:
        return ("ipex+jit", "compile")
    return ()
