"""Does Inductor's C++ int8 GEMM template compute what the quantized graph computes, on this CPU?

    python scripts/check_inductor_int8_gemm.py

random-bert-tiny's static PT2E int8 graph (SmoothQuant 0.6, 4 calibration batches of 2 x 32 tokens) is compiled
with freezing and GEMM autotuning restricted to one backend at a time: `CPP` (Inductor's int8 GEMM template)
and `ATEN` (oneDNN), each with 8-bit and with 7-bit activations (X86InductorQuantizer's `reduce_range`). Each
line prints the largest difference of the compiled logits from the same graph run eagerly, and what the
helpers' check against it accepts (`parity.parity_tolerance`). The helpers autotune
static int8 only on CPUs with VNNI or AMX (`precision_policy.int8_gemm_autotune`): docs/compatibility.md has the
runs behind that rule. Re-run it after a torch upgrade to see whether the rule still holds. Modern stack (PT2E).
"""

from __future__ import annotations

import time
import warnings

import torch
import torch._inductor.config as inductor_config

from cpu_inference_helpers import build_random_qa_model, cached_capabilities
from cpu_inference_helpers.techniques.dtypes import INT8
from cpu_inference_helpers.techniques.parity import flatten_outputs, max_abs_difference, parity_tolerance
from cpu_inference_helpers.techniques.pt2e_quantization import quantize_pt2e


def _batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(1000, 9000, (2, 32), generator=generator),
            "attention_mask": torch.ones(2, 32, dtype=torch.long),
            "token_type_ids": torch.zeros(2, 32, dtype=torch.long)}


def check(backend: str, reduce_range: bool) -> str:
    """One line: the compiled graph's largest logit difference from the same graph run eagerly."""
    torch._dynamo.reset()
    model = build_random_qa_model("random-bert-tiny", seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    calibration = [_batch(generator) for _ in range(4)]
    example = _batch(generator)
    graph = quantize_pt2e(model, example, calibration, dynamic_activations=False, smooth_quant_alpha=0.6,
                          reduce_range=reduce_range)
    with torch.no_grad():
        reference = graph(**example)
        started = time.perf_counter()
        with inductor_config.patch(freezing=True, max_autotune_gemm=True, max_autotune_gemm_backends=backend):
            compiled = torch.compile(graph)(**example)
    seconds = time.perf_counter() - started
    largest_logit = max(tensor.abs().max().item() for tensor in flatten_outputs(reference))
    return (f"{backend:4s} {7 if reduce_range else 8}-bit activations: largest difference "
            f"{max_abs_difference(reference, compiled):.4f} (logits up to {largest_logit:.3f}; the build's check "
            f"accepts {parity_tolerance(INT8, reference):.2f}; compiled in {seconds:.0f} s)")


def main() -> None:
    # Inductor's oneDNN lowering copies its zero points with torch.tensor(tensor): a warning per Linear, no error
    warnings.filterwarnings("ignore", message="To copy construct from a tensor")
    capabilities = cached_capabilities()
    print(f"{capabilities.model_name}; VNNI or AMX: {capabilities.has_int8_dot_product}; torch {torch.__version__}")
    for backend in ("CPP", "ATEN"):
        for reduce_range in (False, True):
            print(check(backend, reduce_range), flush=True)


if __name__ == "__main__":
    main()
