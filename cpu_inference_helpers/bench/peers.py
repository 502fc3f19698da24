"""The runtimes users would pick instead of PyTorch: ONNX Runtime and OpenVINO (optional extras).

Each builder converts a QA model for a fixed input shape and returns a callable with the
same interface as our prepared models (keyword tensors in, start/end logits out), so the
benchmark can time them side by side. A missing package raises `PeerUnavailable` with
the pip command that installs it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cpu_inference_helpers.infra.log_levels import logger_level

logger = logging.getLogger(__name__)

PEERS = ("onnxruntime", "openvino")


class PeerUnavailable(RuntimeError):
    """The peer runtime (or the precision asked of it) is not available here."""


class _LogitsOnly(torch.nn.Module):
    """Wraps a QA model so exporters see plain tensors in and a (start, end) tuple out."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names
        # A new Module starts in training mode, and exporters restore the wrapper's mode afterwards:
        # without this, exporting would switch the user's model to training (dropout on).
        self.eval()

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(**dict(zip(self.input_names, tensors, strict=True)), return_dict=True)
        return outputs.start_logits, outputs.end_logits


def _require(package: str, pip_name: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise PeerUnavailable(f"{pip_name} is not installed (pip install {pip_name}, or pip install -e '.[peers]')")


def _as_logits(start: Any, end: Any) -> dict[str, torch.Tensor]:
    return {"start_logits": torch.as_tensor(start), "end_logits": torch.as_tensor(end)}


ONNX_EXPORT_PREFIX = "cpu-inference-onnx-"


def build_onnxruntime(
    model: torch.nn.Module, example_inputs: Mapping[str, torch.Tensor], precision: str = "fp32", threads: int = 0,
    calibration: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> Callable[..., dict[str, torch.Tensor]]:
    """Export `model` to ONNX (batch and sequence dynamic) and run it with ONNX Runtime's CPU provider, all graph
    optimisations on."""
    _require("onnxruntime", "onnxruntime")
    _require("onnx", "onnx")
    if precision != "fp32":
        raise PeerUnavailable("ONNX Runtime's CPU provider has no bf16 kernels for BERT: fp32 only")
    import onnxruntime

    names = list(example_inputs)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    # Idle ORT threads would spin for a while after each run, stealing the cores from whatever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The session reads the file when it is created: the exported copy (~0.4 GB for bert-base) goes right after.
    with tempfile.TemporaryDirectory(prefix=ONNX_EXPORT_PREFIX) as folder:
        path = Path(folder) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracer and deprecation warnings
            torch.onnx.export(
                _LogitsOnly(model, names), tuple(example_inputs.values()), str(path), input_names=names,
                output_names=["start_logits", "end_logits"], opset_version=17, dynamo=False,
                # any batch size and length: a run over a dataset ends with a smaller batch
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
            )
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(**inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        start, end = session.run(None, {name: inputs[name].numpy() for name in names})
        return _as_logits(start, end)

    run.session = session  # type: ignore[attr-defined]  # for inspection
    return run


def build_openvino(
    model: torch.nn.Module, example_inputs: Mapping[str, torch.Tensor], precision: str = "fp32", threads: int = 0,
    calibration: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> Callable[..., dict[str, torch.Tensor]]:
    """Convert `model` with OpenVINO and compile it for the CPU in f32 or bf16 inference precision, or int8:
    NNCF post-training quantization (transformer preset) on the `calibration` batches, the rest in f32."""
    _require("openvino", "openvino")
    if precision == "int8":  # checked before the conversion, which takes seconds
        _require("nncf", "nncf")
        if not calibration:
            raise PeerUnavailable("OpenVINO int8 needs calibration batches")
    import openvino

    names = list(example_inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = openvino.convert_model(_LogitsOnly(model, names), example_input=tuple(example_inputs.values()))
    if precision == "int8":
        converted = _quantize_with_nncf(converted, names, calibration)
    core = openvino.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise PeerUnavailable("OpenVINO reports no bf16 support on this CPU")
    # No CPU pinning: OpenVINO would pin the calling thread, and with it every PyTorch thread started
    # later in this process, to one core (PyTorch paths timed beside it then ran 3-7x slower here).
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",  # int8: the rest f32
              "PERFORMANCE_HINT": "LATENCY",
              "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(converted, "CPU", config)
    request = compiled.create_infer_request()

    def run(**inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        results = request.infer([inputs[name].numpy() for name in names])
        start, end = (results[output] for output in compiled.outputs)
        return _as_logits(start.copy(), end.copy())

    run.compiled_model = compiled  # type: ignore[attr-defined]  # for inspection
    return run


def _quantize_with_nncf(converted: Any, names: list[str], calibration: Sequence[Mapping[str, torch.Tensor]]) -> Any:
    """NNCF's post-training int8 quantization of an OpenVINO model, calibrated on `calibration`."""
    import nncf

    dataset = nncf.Dataset(list(calibration), lambda batch: tuple(batch[name].numpy() for name in names))
    # NNCF logs its statistics at INFO/WARNING and draws rich progress bars on stdout (the benchmark's table),
    # or, in Jupyter, as live widgets (which break nbconvert's execution without stored widget state).
    with logger_level("nncf"), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            _plain_rich_console():
        return nncf.quantize(converted, dataset, model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(calibration), fast_bias_correction=True)


@contextlib.contextmanager
def _plain_rich_console() -> Iterator[None]:
    """Make rich's global console a text one writing nowhere (not a Jupyter widget) while inside; restore it after."""
    try:
        import rich
        from rich.console import Console
    except ImportError:  # NNCF without rich draws nothing
        yield
        return
    saved = rich._console
    rich._console = Console(file=io.StringIO(), force_jupyter=False, force_terminal=False)
    try:
        yield
    finally:
        rich._console = saved


BUILDERS: dict[str, Callable[..., Callable[..., dict[str, torch.Tensor]]]] = {
    "onnxruntime": build_onnxruntime,
    "openvino": build_openvino,
}
