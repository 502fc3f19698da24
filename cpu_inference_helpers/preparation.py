"""Preparing a list of modes for one model and one example: the one place every workload does it.

The run_qa comparison (and its Ray workers), the benchmark, throughput and cold start all turn `ModeSpec`s
into prepared models here, so that each passes the same options the same way: calibration batches to every
path that calibrates (`ipex+jit:int8`, `auto:int8`), `allow_emulated_bf16` to every bf16 path, and the
rest as the caller gives them (refused by the front door where a path would ignore them).

    ready = prepare_modes(model, example_batch, parse_mode_list("eager,jit,auto:int8"), calibration=batches)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from cpu_inference_helpers.modes import ModeSpec
from cpu_inference_helpers.optimize import InferenceModel, prepare_for_inference
from cpu_inference_helpers.registry import honoured_options
from cpu_inference_helpers.techniques.capabilities import CpuCapabilities

logger = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor]


def needs_calibration(specs: Sequence[ModeSpec]) -> bool:
    """Whether any of `specs` calibrates static int8 (and would fall back to dynamic int8 without batches)."""
    return any("calibration" in honoured_options(spec) for spec in specs)


def prepare_mode(
    model: torch.nn.Module,
    example: Batch,
    spec: ModeSpec,
    *,
    calibration: Sequence[Batch] | None = None,
    allow_emulated_bf16: bool = False,
    capabilities: CpuCapabilities | None = None,
    **options: Any,
) -> InferenceModel:
    """`prepare_for_inference` for one spec, with calibration and `allow_emulated_bf16` where the path honours them.

    `options` (freeze, warmup_steps, auto_kernel_selection, dynamic_shapes, ...) go through as given.
    A spec that calibrates, given no calibration, logs that it will measure dynamic int8 instead.
    """
    honoured = honoured_options(spec)
    given = dict(options)
    if allow_emulated_bf16 and "allow_emulated_bf16" in honoured:
        given["allow_emulated_bf16"] = True
    if "calibration" in honoured:
        if calibration:
            given["calibration"] = list(calibration)
        else:
            logger.warning("%s was given no calibration batches: its static int8 falls back to dynamic int8",
                           spec.name)
    return prepare_for_inference(model, example, mode=spec.mode, precision=spec.precision,
                                 capabilities=capabilities, **given)


def prepare_modes(
    model: torch.nn.Module,
    example: Batch,
    specs: Sequence[ModeSpec],
    *,
    calibration: Sequence[Batch] | None = None,
    allow_emulated_bf16: bool = False,
    capabilities: CpuCapabilities | None = None,
    progress: bool = True,
    **options: Any,
) -> list[InferenceModel]:
    """`prepare_mode` for every spec, in order (a progress bar unless `progress=False`).

    Then each `torch.compile` mode is called once more on `example`, its time added to its set-up: a later mode's
    strict `torch.export` (PT2E int8) resets Dynamo, which drops every graph compiled before it, and the first
    timed call would compile again (7-11 s for minilm-squad at batch 8, charged to its throughput).
    """
    prepared = [prepare_mode(model, example, spec, calibration=calibration, allow_emulated_bf16=allow_emulated_bf16,
                             capabilities=capabilities, **options)
                for spec in tqdm(specs, desc="preparing modes", leave=False, disable=not progress)]
    for ready in prepared:
        if ready.record.mode == "compile":
            start = time.perf_counter()
            with torch.no_grad():
                ready(**example)
            ready.record.setup_seconds += time.perf_counter() - start
    return prepared
