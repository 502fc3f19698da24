"""torch.export + AOTInductor: the model compiled ahead of time into a package that loads without Python.

TorchScript's promise ("saved from a Python process and loaded where there is no Python dependency")
is kept today by `torch.export` (a whole-graph capture that refuses what it cannot capture, instead of
replaying one branch) and AOTInductor (Inductor's kernels compiled ahead of time into a `.pt2` package
with the weights). The package loads in Python with `torch._inductor.aoti_load_package` and in C++ with
`torch::inductor::AOTIModelPackageLoader` (see `deploy/` and `cpu_inference_helpers.deployment`).

What `export_model` exports is a positional wrapper around the model: inputs in the order of the example
dict's names, outputs the model output's tensors in order, both recorded in the package's metadata
(`input_names`, `output_names`, `precision`), so that a C++ caller knows what to feed and what it gets.
bf16 runs as autocast inside the wrapper's forward (export captures an autocast region inside forward;
an autocast context around the `export` call is silently ignored and exports fp32). Batch and sequence
dimensions are dynamic (one package for every batch size up to `MAX_BATCH` and every length up to the
model's position embeddings). The package's kernels are compiled for this CPU's instruction set
(metadata `AOTI_CPU_ISA`): build it on the kind of CPU it will run on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cpu_inference_helpers.infra.log_levels import logger_level
from cpu_inference_helpers.record import Built
from cpu_inference_helpers.techniques.dtypes import precision_name
from cpu_inference_helpers.techniques.dynamic_shapes import (
    MAX_BATCH,
    batch_and_sequence_dims,
    batch_of_two_if_one,
    sequence_bound,
)
from cpu_inference_helpers.techniques.parity import build_verified_or_eager, flatten_outputs

logger = logging.getLogger(__name__)

PACKAGE_SUFFIX = ".pt2"


class ExportRefused(RuntimeError):
    """torch.export or AOTInductor could not build a package; the message is `export_refusal`'s line."""


class _PositionalModel(torch.nn.Module):
    """The model behind a positional signature: named inputs in a fixed order in, output tensors out."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str], output_names: Sequence[str],
                 autocast: bool):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.autocast = autocast

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = dict(zip(self.input_names, tensors, strict=True))
        if not self.autocast:
            outputs = self.model(**inputs)
        else:  # the autocast region sits inside forward, where export captures it
            raised: list[BaseException] = []
            with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
                try:
                    outputs = self.model(**inputs)
                except BaseException as error:
                    raised.append(error)
                    raise
            if raised:  # torch 2.8's export swallows an exception leaving an autocast region: raise it again
                raise raised[0]
        by_name = _named_outputs(outputs)
        return tuple(by_name[name] for name in self.output_names)


def _named_outputs(outputs: Any) -> dict[str, torch.Tensor]:
    """A model output's tensors by name (a ModelOutput or dict), or numbered (a tuple or one tensor)."""
    if isinstance(outputs, Mapping):
        return {str(name): value for name, value in outputs.items() if isinstance(value, torch.Tensor)}
    return {f"output_{index}": tensor for index, tensor in enumerate(flatten_outputs(outputs))}


class PackagedModel:
    """An AOTInductor package loaded in this process, called with named tensors like the model it came from.

    Returns a dict of the output tensors by name (the front door rebuilds the model's `ModelOutput`).
    `path` is the package file; `metadata` what the package says about itself.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.runner = torch._inductor.aoti_load_package(str(self.path))
        self.metadata: dict[str, str] = dict(self.runner.get_metadata())
        missing = [key for key in ("input_names", "output_names") if key not in self.metadata]
        if missing:
            raise ValueError(f"{self.path} is not a package written by export_model: its metadata lacks "
                             f"{', '.join(missing)}")
        self.input_names = self.metadata["input_names"].split(",")
        self.output_names = self.metadata["output_names"].split(",")

    @property
    def precision(self) -> str:
        """The precision the package computes in (as exported)."""
        return self.metadata.get("precision", "fp32")

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        unknown = sorted(set(inputs) - set(self.input_names))
        absent = [name for name in self.input_names if name not in inputs]
        if unknown or absent:
            problems = ([f"missing {', '.join(absent)}"] if absent else []) + (
                [f"unknown {', '.join(unknown)}"] if unknown else [])
            raise ValueError(f"this package takes {', '.join(self.input_names)}; " + "; ".join(problems))
        # The compiled kernels index the inputs as contiguous (their strides are not checked): a slice such as
        # ids[:, :20] would be read wrongly, without an error. contiguous() copies only such views.
        outputs = self.runner(*(inputs[name].contiguous() for name in self.input_names))
        return dict(zip(self.output_names, outputs, strict=True))

    def __repr__(self) -> str:
        return f"PackagedModel({self.path}, {self.precision}, inputs {self.input_names})"


def load_package(path: str | Path) -> PackagedModel:
    """Load an AOTInductor package written by `export_model` (a fresh process needs only torch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no AOTInductor package at {path}: write one with "
                                "prepare_for_inference(..., mode='export', package_path=...) or save_prepared")
    return PackagedModel(path)


def export_refusal(error: BaseException) -> str:
    """One line for why torch.export refused a model: the exception, its first line, and the user line it names."""
    text = str(error).strip()
    first = (text.splitlines()[0] if text else "").split(" (unhinted:")[0].rstrip(". ")
    line = None
    # export ends its message with the call that raised: 'File "...", line N, in forward' and the code line.
    for match in re.finditer(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)', text):
        if "/torch/" not in match.group(1):
            code = match.group(4).split("  #")[0].strip()
            line = f"{Path(match.group(1)).name}:{match.group(2)} in {match.group(3)}: {code}"
    return f"{type(error).__name__}: {first}" + (f" (at {line})" if line else "")


def _new_package_path() -> Path:
    """A package path in a fresh temporary folder, removed when the process exits (see `_remove_at_exit`)."""
    folder = Path(tempfile.mkdtemp(prefix="cpu-inference-export-"))
    return folder / f"model{PACKAGE_SUFFIX}"


def _remove_at_exit(owner: object, folder: Path) -> None:
    weakref.finalize(owner, shutil.rmtree, folder, ignore_errors=True)


def export_package(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    package_path: str | Path,
    dtype: str | torch.dtype = "fp32",
    freeze: bool = True,
    dynamic: bool = True,
) -> Path:
    """torch.export `model` on `example_inputs` and compile it with AOTInductor into `package_path`.

    Raises what torch.export or AOTInductor raise (`export_refusal` makes one line of it). `dtype` "bf16"
    exports autocast regions; "int8" expects a model quantized already (torchao). `freeze` lets Inductor
    fold the weights into the kernels (pre-packed); `dynamic` makes batch and sequence dynamic.
    """
    name = precision_name(dtype)
    inputs = dict(example_inputs)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16", cache_enabled=False):
        output_names = list(_named_outputs(model(**inputs)))
    wrapper = _PositionalModel(model, list(inputs), output_names, autocast=name == "bf16").eval()
    shapes = None
    if dynamic:  # one entry, the wrapper's *tensors; a batch of one is exported as two (see dynamic_shapes)
        shapes = (tuple(batch_and_sequence_dims(inputs, sequence_bound(model)).values()),)
        inputs = batch_of_two_if_one(inputs)
    # When export refuses a model it logs and prints (to sys.stderr) the graph it was building; the refusal it
    # raises says what and where, so that partial graph is kept out of the reader's output.
    with logger_level("torch.fx.experimental.symbolic_shapes"), contextlib.redirect_stderr(io.StringIO()):
        exported = torch.export.export(wrapper, tuple(inputs.values()), dynamic_shapes=shapes, strict=False)
    metadata = {"input_names": ",".join(inputs), "output_names": ",".join(output_names), "precision": name,
                "torch_version": torch.__version__, "dynamic": str(dynamic)}
    path = Path(package_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written beside it and renamed: a failed compile leaves an earlier package untouched
    partial = path.with_name(path.stem + ".partial" + PACKAGE_SUFFIX)
    try:
        written = torch._inductor.aoti_compile_and_package(
            exported, package_path=str(partial),
            inductor_configs={"freezing": freeze, "aot_inductor.metadata": metadata},
        )
        Path(written).replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def export_model(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    dtype: str | torch.dtype = "fp32",
    freeze: bool = True,
    warmup_steps: int = 2,
    verify: bool = True,
    dynamic: bool = True,
    package_path: str | Path | None = None,
) -> Built:
    """Export `model` with torch.export, package it with AOTInductor, load the package and check it against eager.

    Args:
        model: the model (eval mode is set); it is left unchanged. For int8, a torchao-quantized model.
        example_inputs: a dict of named tensors; their names and order become the package's inputs.
        dtype: "fp32", "bf16" (autocast captured in the graph) or "int8" (checked at int8's tolerance).
        freeze: Inductor's weight freezing (constant folding, weights pre-packed for oneDNN / MKL).
        warmup_steps: calls of the loaded package before anyone times it.
        verify: compare the package's outputs with eager on the example inputs; fall back beyond tolerance.
        dynamic: batch and sequence dimensions dynamic (default), else the example's shapes only.
        package_path: where to write the `.pt2` package (kept); default a temporary file removed at exit.

    Returns:
        A `Built` of mode "export" whose model is a `PackagedModel`; when export refuses the model, mode
        "eager" with a fallback `Step("export", why)` naming the line export could not capture.
    """
    name = precision_name(dtype)
    temporary = package_path is None
    path = _new_package_path() if temporary else Path(package_path)
    timings: dict[str, float] = {}

    def export_and_load(inputs: dict[str, torch.Tensor]) -> PackagedModel:
        start = time.perf_counter()
        try:
            export_package(model, inputs, path, dtype=name, freeze=freeze, dynamic=dynamic)
        except Exception as error:  # export's UserError, GuardOnDataDependentSymNode, Inductor's errors...
            hint = ("; torch.compile (mode 'compile') breaks the graph there instead of refusing"
                    if "data-dependent" in str(error) else "")
            raise ExportRefused(export_refusal(error) + hint) from error
        timings["export"] = time.perf_counter() - start
        packaged = load_package(path)
        if temporary:
            _remove_at_exit(packaged, path.parent)
        return packaged

    built = build_verified_or_eager(model, example_inputs, export_and_load, mode="export", dtype=name,
                                    what="the exported package's", warmup_steps=warmup_steps, verify=verify)
    if built.fell_back:
        if temporary:
            shutil.rmtree(path.parent, ignore_errors=True)
        logger.warning("torch.export not applied, using the eager model: %s", built.reason)
        return built
    built.frozen = freeze
    built.dict_outputs = True
    where = "a temporary package" if temporary else f"package {path}"
    built.applied.append(f"torch.export + AOTInductor ({where}" + (", freezing" if freeze else "")
                         + (", dynamic batch and sequence" if dynamic else ", static shapes")
                         + f"; {timings.get('export', 0.0):.1f} s to export and compile)")
    return built


class SkipsMaskWhenUnpadded(torch.nn.Module):
    """A toy token model that skips its attention mask when nothing is padded: a Python branch on data.

    Eager, the shortcut is exact. torch.export refuses the model and names the `if` line (it cannot
    capture a branch on tensor values); torch.jit.trace records the branch the example took, so a trace
    from an unpadded example skips the mask for every input, padded ones included: wrong, with only a
    TracerWarning (`trace_model`'s contrasting-input check catches it and falls back).
    """

    def __init__(self, vocab_size: int = 100, hidden: int = 8):
        super().__init__()
        self.embeddings = torch.nn.Embedding(vocab_size, hidden)
        self.linear = torch.nn.Linear(hidden, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.embeddings(input_ids)
        if attention_mask.all():  # nothing padded: skip the mask (a branch on data)
            return {"logits": self.linear(hidden)}
        return {"logits": self.linear(hidden * attention_mask.unsqueeze(-1).to(hidden.dtype))}


__all__ = ["MAX_BATCH", "SkipsMaskWhenUnpadded", "ExportRefused", "PackagedModel", "export_model", "export_package",
           "export_refusal", "load_package"]
