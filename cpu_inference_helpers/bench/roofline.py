"""The hardware limit: measured matrix-multiply peak throughput and a model's FLOP count.

A transformer's inference time is dominated by matrix products, so the fastest matmul
this machine can run (through the best library PyTorch reaches: MKL, or oneDNN) bounds
every inference path. `measure_matmul_peak` finds that bound empirically per dtype;
`count_model_flops` counts the FLOPs of one forward pass, so a path's latency converts
into a fraction of the roofline.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.techniques.dtypes import INT8, as_dtype, precision_name
from cpu_inference_helpers.techniques.ipex_support import IPEX_JIT_DEPRECATION, load_ipex

logger = logging.getLogger(__name__)

#: (M, K, N) shapes: bert-base's projections at 384 tokens, its feed-forward, and a large square.
DEFAULT_SHAPES: tuple[tuple[int, int, int], ...] = (
    (384, 768, 768), (384, 768, 3072), (3072, 768, 3072), (2048, 2048, 2048),
)


@dataclass
class MatmulPeak:
    """Best measured GEMM throughput for one dtype, with every backend and shape tried."""

    dtype: str
    gflops: float
    backend: str
    shape: tuple[int, int, int]
    measurements: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _best_seconds(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.05, slow_seconds: float = 1.0,
                  budget_seconds: float = 1.0) -> float:
    """Fastest call time over `repeats` timed calls (after a warm-up), each batch lasting >= min_seconds.

    A backend whose first call takes longer than `slow_seconds` is far from the peak (e.g. `torch._int_mm`
    without VNNI: about 1.4 GOP/s on an AVX2-only AMD EPYC, 12 s for one 2048^3 product): that call's time
    is returned, so the roofline does not spend minutes on it. Likewise the timed batches stop once they have
    taken `budget_seconds` (a backend at the peak needs about `repeats * min_seconds`, well within it; a slow
    one, e.g. `torch._int_mm` at 1.6 s a call on that EPYC, stops after its first batch).
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > slow_seconds:
        return first
    start = time.perf_counter()
    fn()
    single = max(time.perf_counter() - start, 1e-6)
    inner = max(1, int(min_seconds / single))
    best = float("inf")
    timed_since = time.perf_counter()
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
        if time.perf_counter() - timed_since > budget_seconds:
            break
    return best


def _gemm_candidates(dtype: torch.dtype, m: int, k: int, n: int) -> dict[str, Callable[[], Any]]:
    """The ways PyTorch can run an (m x k) @ (k x n) product on CPU: ATen's matmul, oneDNN's linear, IPEX's."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(dtype)
    weight = torch.randn(n, k, generator=generator).to(dtype)
    candidates: dict[str, Callable[[], Any]] = {
        "torch.matmul": lambda: torch.matmul(a, weight.t()),
    }
    if torch.backends.mkldnn.is_available():
        try:
            from torch.utils import mkldnn as mkldnn_utils

            linear = torch.nn.Linear(k, n, bias=False)
            linear.weight.data = weight.float()
            packed = mkldnn_utils.to_mkldnn(linear, dtype)  # oneDNN with a pre-packed weight
            a_mkldnn = a.to_mkldnn()
            packed(a_mkldnn)
            candidates["oneDNN linear (pre-packed)"] = lambda: packed(a_mkldnn)
        except (RuntimeError, TypeError, ValueError) as error:  # e.g. oneDNN without bf16 on this CPU
            logger.info("oneDNN %s linear unavailable: %s", dtype, error_summary(error))
    ipex = load_ipex()
    if ipex is not None:
        linear = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)).eval()
        linear[0].weight.data = weight.float()
        try:
            optimized = ipex.optimize(linear, dtype=dtype, auto_kernel_selection=True, inplace=False)
            optimized(a)
            candidates["IPEX linear (oneDNN)"] = lambda: optimized(a)
        except (RuntimeError, TypeError, ValueError, AssertionError) as error:
            logger.info("IPEX %s linear unavailable: %s", dtype, error_summary(error))
    return candidates


#: torch 2.13 warns (once per process) that quantized tensors, which the quantized engines' Linear takes, are
#: deprecated (pytorch/pytorch#184982); the roofline still times those engines, as PyTorch's int8 paths use them.
QUANTIZED_TENSOR_DEPRECATION = r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"


def _int8_gemm_candidates(m: int, k: int, n: int) -> dict[str, Callable[[], Any]]:
    """The int8 products PyTorch reaches on CPU (int32 accumulation): `torch._int_mm`, and the static
    quantized Linear of each quantized engine (u8 activations x s8 prepacked weights, VNNI / AMX-INT8)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (m, k), generator=generator, dtype=torch.int8)
    b = torch.randint(-128, 128, (k, n), generator=generator, dtype=torch.int8)
    candidates: dict[str, Callable[[], Any]] = {"torch._int_mm": lambda: torch._int_mm(a, b)}
    x, weight = torch.randn(m, k, generator=generator), torch.randn(n, k, generator=generator)
    for engine in ("x86", "onednn", "fbgemm"):
        if engine not in torch.backends.quantized.supported_engines:
            continue
        try:
            previous, torch.backends.quantized.engine = torch.backends.quantized.engine, engine
            with warnings.catch_warnings():  # the API the quantized engines are reached by: deprecated, still timed
                warnings.filterwarnings("ignore", message=QUANTIZED_TENSOR_DEPRECATION)
                qx = torch.quantize_per_tensor(x, 0.05, 64, torch.quint8)
            packed = torch.ops.quantized.linear_prepack(torch.quantize_per_tensor(weight, 0.05, 0, torch.qint8), None)
            torch.ops.quantized.linear(qx, packed, 0.1, 64)

            def run(engine: str = engine, qx: torch.Tensor = qx, packed: Any = packed) -> Any:
                torch.backends.quantized.engine = engine
                return torch.ops.quantized.linear(qx, packed, 0.1, 64)

            candidates[f"quantized.linear ({engine})"] = run
        except (RuntimeError, AttributeError) as error:
            logger.info("quantized engine %s unavailable: %s", engine, error_summary(error))
        finally:
            torch.backends.quantized.engine = previous
    return candidates


#: The peaks the benchmark measures: the compute types of the matrix products (bf32's products run in bf16).
ROOFLINE_PRECISIONS = ("fp32", "bf16", INT8)


@contextlib.contextmanager
def _quantized_engine_restored(engine: str) -> Iterator[None]:
    """Put `torch.backends.quantized.engine` back to `engine` when the block ends."""
    try:
        yield
    finally:
        torch.backends.quantized.engine = engine


def measure_matmul_peak(
    dtype: str | torch.dtype = torch.float32,
    shapes: Sequence[tuple[int, int, int]] = DEFAULT_SHAPES,
    repeats: int = 5,
) -> MatmulPeak:
    """The best GEMM throughput (GFLOP/s, or int8 GOP/s) PyTorch reaches here in `dtype`, over backends and shapes.

    `dtype`: "fp32" / "bf16" / "int8" or the torch dtype. Uses the current torch thread count, so set it
    to what the models will use.
    """
    name = precision_name(dtype)
    measurements = []
    engine = torch.backends.quantized.engine  # the int8 candidates switch engines: restored below
    with torch.no_grad(), warnings.catch_warnings(), _quantized_engine_restored(engine):
        warnings.filterwarnings("ignore", message=IPEX_JIT_DEPRECATION)  # IPEX, on every first call
        for m, k, n in shapes:
            candidates = _int8_gemm_candidates(m, k, n) if name == INT8 else _gemm_candidates(as_dtype(name), m, k, n)
            for backend, fn in candidates.items():
                seconds = _best_seconds(fn, repeats)
                measurements.append(
                    {"backend": backend, "shape": (m, k, n), "gflops": 2 * m * k * n / seconds / 1e9}
                )
    best = max(measurements, key=lambda item: item["gflops"])
    return MatmulPeak(name, best["gflops"], best["backend"], best["shape"], measurements)


#: How far (as a ratio, either way) the roofline measured after a run may move from the one measured before it
#: before the run is called unsteady: the best-of-5 roofline of one host agrees within about 10% between runs.
STEADY_HOST_RATIO = 1.25


def roofline_moves(before: Mapping[str, MatmulPeak], after: Mapping[str, MatmulPeak]) -> dict[str, float]:
    """Per precision measured both times, the roofline after a run over the one before it."""
    return {name: after[name].gflops / before[name].gflops for name in before
            if name in after and before[name].gflops > 0}


def bf16_and_int8_moved_apart(moves: Mapping[str, float], steady_ratio: float = STEADY_HOST_RATIO) -> bool:
    """Whether bf16's and int8's rooflines moved by ratios further apart than `steady_ratio` during the run (AMX's
    bf16 and int8 units lent out unevenly): then int8 against bf16, even timed side by side, says nothing."""
    if "bf16" not in moves or "int8" not in moves:
        return False
    return max(moves["bf16"], moves["int8"]) / min(moves["bf16"], moves["int8"]) > steady_ratio


def host_drift(before: Mapping[str, MatmulPeak], after: Mapping[str, MatmulPeak],
               steady_ratio: float = STEADY_HOST_RATIO) -> list[str]:
    """The summary's lines on how the host's speed moved during a run: the rooflines measured before and after
    it, per precision, and where any moved by more than `steady_ratio`, a line saying which numbers still hold.

    Shared and throttled hosts change speed by the minute (a 2 vCPU VM whose AMX throughput swung 3x within one
    benchmark, docs/benchmarks.md): then the ratios timed side by side in one group hold, milliseconds compared
    across groups and shares of the roofline do not. Where bf16 and int8 moved apart (AMX's bf16 and int8 units
    lent out unevenly: bf16 0.30x, int8 0.78x in one run), int8 against bf16 does not hold either.
    """
    moved = roofline_moves(before, after)
    lines = ["host speed during the run, matmul roofline after / before: "
             + ", ".join(f"{name} {ratio:.2f}x ({before[name].gflops:.0f} -> {after[name].gflops:.0f})"
                         for name, ratio in moved.items())]
    unsteady = [name for name, ratio in moved.items() if not 1 / steady_ratio <= ratio <= steady_ratio]
    if unsteady:
        lines.append(f"  UNSTEADY HOST ({', '.join(unsteady)} moved more than {steady_ratio - 1:.0%}): trust the "
                     "ratios timed side by side within one group (each row against eager, int8 against the bf16 "
                     "row timed beside it), not milliseconds across groups or shares of the roofline; rerun on a "
                     "quiet machine")
    if bf16_and_int8_moved_apart(moved, steady_ratio):
        lines.append(f"  bf16 and int8 moved apart ({moved['bf16']:.2f}x against {moved['int8']:.2f}x): int8 "
                     "against bf16, even timed side by side, carries how much of each the host left us; judge "
                     "int8's gain over bf16 on a steady run")
    return lines


def count_model_flops(model: Callable[..., Any], inputs: Mapping[str, torch.Tensor]) -> int:
    """FLOPs of one forward pass of an eager model (matmuls, convolutions and attention; 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**inputs)
    return int(counter.get_total_flops())
