"""`torch.compile` (Inductor with weight freezing): the modern successor of TorchScript for CPU inference.

TorchScript is deprecated in recent PyTorch and transformers 5 dropped its TorchScript
support; `torch.compile` is the path forward. Compilation happens on the first call, so
`compile_model` runs the warm-up passes itself and, like `trace_model`, verifies the
result against eager and falls back with a logged reason when anything fails.

Freezing (weights as constants: autocast's weight casts folded once, weights pre-packed for
oneDNN / MKL) needs the global `torch._inductor.config.freezing` while Dynamo traces:
Dynamo decides then whether parameters become graph constants or graph inputs.
`torch.compile(..., options={"freezing": True})` sets it only later, inside Inductor, after
the parameters were lifted to inputs, so Inductor's freezing finds nothing to freeze and the
weights are cast (bf16) and read unpacked on every call. `FreezingCompiled` sets it around
every call instead, so the first compilation and any recompilation (a new shape) freeze.

Frozen weights are guarded by identity, so each model compiled in a process adds one entry to
Dynamo's cache of that model class's `forward`; past `torch._dynamo.config.recompile_limit`
(8) Dynamo stops compiling and runs such a model eagerly, with only a logged warning (a notebook
or benchmark compiling bert-base in several precisions and shapes reaches it). `FreezingCompiled`
raises the limit for its own calls to `RECOMPILE_LIMIT`.

Shapes: at static shapes Inductor runs fp32 Linear layers on MKL's pre-packed GEMM (no fused
GELU or residual Add); at dynamic shapes (`dynamic=True`, torch 2.13) on oneDNN's pre-packed
GEMM with the GELU and the Add fused into it, which is faster on some CPUs (`kernel_choice`
measures which). bf16 and bf32 Linear layers run on oneDNN either way. torch 2.8 leaves fp32
weights unpacked at dynamic shapes (`aten::addmm` on the parameters themselves), so there an
in-place change to them after compiling does show in the outputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch._dynamo.config as dynamo_config
import torch._inductor.config as inductor_config
from torch._dynamo.utils import counters as dynamo_counters

from cpu_inference_helpers.infra.log_levels import quiet_profile
from cpu_inference_helpers.record import Built
from cpu_inference_helpers.techniques.dtypes import precision_name
from cpu_inference_helpers.techniques.parity import build_verified_or_eager, flatten_outputs
from cpu_inference_helpers.techniques.precision import GLOBAL_SWITCHES_LOCK

logger = logging.getLogger(__name__)

#: Dynamo's per-function cache limit while a `FreezingCompiled` model runs (Dynamo's default: 8).
RECOMPILE_LIMIT = 64
#: Inductor settings under which each matrix product's kernel is chosen by timing: Inductor's C++ GEMM templates
#: (AMX or AVX-512 VNNI micro-kernels with the following element-wise ops fused in) against oneDNN's kernel
#: ("ATEN"), at compile time on the shapes at hand; the timing reports Inductor would write to stderr are turned
#: off (the second switch exists from torch 2.9 on).
GEMM_AUTOTUNE_SETTINGS: dict[str, Any] = {
    name: value
    for name, value in {"max_autotune_gemm": True, "max_autotune_gemm_backends": "CPP,ATEN",
                        "autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}.items()
    if hasattr(inductor_config, name)
}

#: Set to 1 to compile without GEMM autotuning wherever a path asks for it (`compile:int8` with static ranges):
#: compiling an int8 graph then takes about half the time, and its GEMMs run oneDNN's kernels (up to ~1.1x slower
#: at batch 1 on AMX, the same at batch 8; docs/int8.md). `make test` sets it: the tests and notebooks check what
#: the paths compute, not how fast (`tests/test_pt2e_quantization.py` unsets it to check the autotuning itself).
NO_GEMM_AUTOTUNE_ENV_VAR = "CPU_INFERENCE_NO_GEMM_AUTOTUNE"


def gemm_autotune_disabled() -> bool:
    """Whether `NO_GEMM_AUTOTUNE_ENV_VAR` turns GEMM autotuning off in this process (any value but "" and "0")."""
    return os.environ.get(NO_GEMM_AUTOTUNE_ENV_VAR, "").strip() not in ("", "0")


class FreezingCompiled:
    """A `torch.compile`d model whose compilations see Inductor's global `freezing` setting.

    Calling it compiles on first use (and again for each new input shape); each call runs
    under `torch._inductor.config.patch(freezing=...)` so that Dynamo, when it traces, makes
    the weights graph constants, and with Dynamo's recompile limit at least `RECOMPILE_LIMIT`
    so that a process may compile many models of one class. Frozen weights are read once:
    changing the model's weights afterwards does not change this model's outputs (as with
    `torch.jit.freeze`; except fp32 at dynamic shapes on torch 2.8, see the module docstring).
    The two settings are patched per call, not set at build time, because Dynamo reads them whenever a
    new input shape makes it compile again; they are restored after each call. `gemm_autotune`: calls on the
    first call's input shapes (the build's warm-up on the example) also run under `GEMM_AUTOTUNE_SETTINGS`, so
    each compilation for that shape times the GEMM kernels, a later shape compiles without.

    Every call runs with autograd off and outside inference mode (`torch.inference_mode(False)`,
    `torch.no_grad()`), whatever the caller's mode: Dynamo guards on it (a tensor's dispatch keys lose
    Autograd under `torch.inference_mode()`), so a model warmed up under `torch.no_grad()` and then called
    under `torch.inference_mode()`, or without either, would compile the whole graph again (7-12 s for
    minilm-squad at batch 8 in `make qa`, charged to the first timed batch). Outputs are ordinary tensors,
    never inference tensors. Inputs that are inference tensors (created under inference mode) still compile
    once more.

    On torch 2.13 a strict `torch.export` anywhere in the process (PT2E int8 does one) calls
    `torch._dynamo.reset()`, which drops every compiled graph: the next call compiles again, and says so in an
    INFO log line (`preparation.prepare_modes` calls each compiled mode once more after preparing them all, for
    that reason; torch 2.8's strict export leaves other models' graphs alone).
    """

    def __init__(self, compiled: Callable[..., Any], freezing: bool, gemm_autotune: bool = False):
        self.compiled = compiled
        self.freezing = freezing
        self.gemm_autotune = gemm_autotune
        self.autotuned_shapes: tuple[Any, ...] | None = None  # the first call's, when `gemm_autotune`
        self.compiled_shapes: set[tuple[Any, ...]] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        shapes = input_shapes(args, kwargs)
        if self.gemm_autotune and self.autotuned_shapes is None:
            self.autotuned_shapes = shapes
        autotune = self.gemm_autotune and shapes == self.autotuned_shapes
        # Process-wide settings, patched for this call only and restored after it, under the lock that keeps
        # another thread's call from seeing them (`precision.GLOBAL_SWITCHES_LOCK`); the graph count too.
        with GLOBAL_SWITCHES_LOCK:
            graphs_before = dynamo_counters["stats"]["unique_graphs"]
            limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
            settings = {"freezing": self.freezing, **(GEMM_AUTOTUNE_SETTINGS if autotune else {})}
            with inductor_config.patch(settings), dynamo_config.patch(recompile_limit=limit), \
                    torch.inference_mode(False), torch.no_grad():
                outputs = self.compiled(*args, **kwargs)
            compiled_now = dynamo_counters["stats"]["unique_graphs"] > graphs_before
        if shapes in self.compiled_shapes and compiled_now:
            logger.info("torch.compile compiled this model again for input shapes it had compiled before: Dynamo's "
                        "caches were reset (torch._dynamo.reset(), which torch 2.13's torch.export(strict=True) calls)")
        self.compiled_shapes.add(shapes)
        return outputs


def input_shapes(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """The shapes and dtypes of a call's tensor arguments, by position and by name: what a compilation is for."""
    def describe(value: Any) -> Any:
        return (tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__
    return (tuple(describe(value) for value in args),
            tuple((name, describe(value)) for name, value in sorted(kwargs.items())))


def compile_model(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    dtype: str | torch.dtype = torch.float32,
    freezing: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
    dynamic: bool = False,
    gemm_autotune: bool = False,
) -> Built:
    """Compile `model` with Inductor, warm it up on `example_inputs`, and check it against eager.

    Args:
        model: the model (eval mode is set); it is left unchanged.
        example_inputs: a dict of named tensors; shapes are compiled statically, so use the
            shapes you will run (e.g. padding to a fixed max_seq_length).
        dtype: "fp32" / torch.float32, "bf32" (fp32, bf16 matrix products), or "bf16" /
            torch.bfloat16 to run under CPU autocast.
        freezing: let Inductor treat weights as constants (constant folding, oneDNN weight prepacking);
            the model's weights must not change afterwards.
        warmup_steps: calls after compilation, before anyone times the model.
        verify: compare with eager on the example inputs and fall back beyond `parity_tolerance`.
        dynamic: compile for dynamic shapes (one graph for many sequence lengths and batch sizes; sizes
            of 1 are still specialised). With freezing on torch 2.13 this also moves fp32 Linear layers
            from MKL to oneDNN with fused GELU / Add (see the module docstring;
            `kernel_choice.choose_compile_shapes` measures which is faster).
        gemm_autotune: time Inductor's C++ GEMM templates against oneDNN for each matrix product while compiling
            for the example's shape and keep the faster (`GEMM_AUTOTUNE_SETTINGS`; compiling takes about 30 s
            more for bert-base's int8 graph on 2 vCPUs, so other shapes compile later without it). For int8
            graphs, whose templates fuse the quantization around the AMX / VNNI kernel (`compile:int8` with
            static ranges turns it on). Off wherever `NO_GEMM_AUTOTUNE_ENV_VAR` is set (logged).
    """
    precision_name(dtype)  # a clear ValueError for an unknown precision; the name travels on (bf32 keeps its math)
    if gemm_autotune and gemm_autotune_disabled():
        logger.info("GEMM autotuning skipped: %s is set; the GEMMs run oneDNN's kernels", NO_GEMM_AUTOTUNE_ENV_VAR)
        gemm_autotune = False

    def compile_(inputs: dict[str, torch.Tensor]) -> FreezingCompiled:
        return FreezingCompiled(torch.compile(model, backend="inductor", dynamic=dynamic), freezing, gemm_autotune)

    built = build_verified_or_eager(model, example_inputs, compile_, mode="compile", dtype=dtype,
                                    what="the compiled model's", warmup_steps=warmup_steps, verify=verify)
    if built.fell_back:
        logger.warning("torch.compile not applied, using the eager model: %s", built.reason)
    else:
        built.frozen = freezing
        built.applied.append("torch.compile (inductor" + (", freezing" if freezing else "")
                             + (", dynamic shapes" if dynamic else "")
                             + (", GEMMs autotuned" if gemm_autotune else "") + ")")
    return built


def reads_linear_weights_each_call(
    call: Callable[..., Any], model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]
) -> bool:
    """Whether `call` (a compiled, traced or prepared `model`) reads `model`'s Linear weights on every call.

    With freezing that works, the Linear weights are folded into the graph at compile time (cast
    to bf16 once under autocast, pre-packed for oneDNN / MKL on x86): copies, so a later change
    to the model goes unseen. Unfrozen, the graph takes the weights as inputs on every call. This
    doubles every Linear weight for one call (halving it back restores the exact values: a power
    of two) and reports whether the outputs moved.
    """
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        before = [t.clone() for t in flatten_outputs(call(**inputs))]
        for weight in weights:
            weight.mul_(2)
        try:
            after = flatten_outputs(call(**inputs))
        finally:
            for weight in weights:
                weight.div_(2)
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


#: Operators a compiled graph runs Linear layers with on CPU, and what they are.
LINEAR_KERNELS: dict[str, str] = {
    "mkl::_mkl_linear": "MKL's pre-packed GEMM (fp32; GELU and Add run as separate kernels)",
    "mkldnn::_linear_pointwise": "oneDNN's pre-packed GEMM (GELU or the residual Add fused into it)",
    "aten::addmm": "ATen's addmm (weights not pre-packed)",
}


def linear_kernels(call: Callable[..., Any], inputs: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Which Linear-layer operators (`LINEAR_KERNELS`) one call of `call(**inputs)` runs, and how often (profiler)."""
    with torch.no_grad(), quiet_profile() as profile:
        call(**inputs)
    return {event.key: event.count for event in profile.key_averages() if event.key in LINEAR_KERNELS}
