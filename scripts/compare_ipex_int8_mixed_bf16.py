"""IPEX static int8 with its float parts in fp32 against int8-mixed-bf16 and ipex+jit:bf16, side by side.

    python scripts/compare_ipex_int8_mixed_bf16.py [--attention sdpa|eager] [--shapes 384x1,384x8]

For each shape: random-bert-base, IPEX SmoothQuant int8 (alpha 0.5) calibrated on the shape's batch, traced and
frozen once plainly and once under bf16 autocast (what `ipex+jit:int8` does on a CPU with AMX), and the front
door's `ipex+jit:bf16`; prints each one's largest logit difference from fp32 and their medians over 8 rounds of
`interleaved_samples`. Legacy stack (IPEX) only. docs/int8.md records a run on the Intel Xeon with AMX.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch

from cpu_inference_helpers import prepare_for_inference
from cpu_inference_helpers.infra.timing import interleaved_samples
from cpu_inference_helpers.models import build_random_qa_model
from cpu_inference_helpers.techniques.quantization import calibrated_ipex_int8


def traced_int8(calibrated: torch.nn.Module, inputs: dict[str, torch.Tensor], mixed_bf16: bool) -> torch.nn.Module:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_bf16):
        graph = torch.jit.freeze(torch.jit.trace(calibrated, example_kwarg_inputs=inputs, strict=False,
                                                 check_trace=False))
        for _ in range(3):  # IPEX's fusion passes run on the first calls
            graph(**inputs)
    return graph


def compare(attention: str, seq: int, batch: int) -> None:
    torch.manual_seed(0)
    model = build_random_qa_model("random-bert-base", attn_implementation=attention)
    ids = torch.randint(1000, 20000, (batch, seq))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    calibrated = calibrated_ipex_int8(model, inputs, [inputs, inputs], alpha=0.5)
    candidates = {"ipex+jit:int8 (fp32 parts)": traced_int8(calibrated, inputs, mixed_bf16=False),
                  "int8-mixed-bf16": traced_int8(calibrated, inputs, mixed_bf16=True),
                  "ipex+jit:bf16": prepare_for_inference(model, inputs, mode="ipex+jit", precision="bf16")}
    with torch.no_grad():
        reference = model(**inputs).start_logits
        for name, candidate in candidates.items():
            logits = candidate(**inputs)
            logits = logits["start_logits"] if isinstance(logits, dict) else logits.start_logits
            print(f"{attention} {seq}x{batch} {name}: max |logit - fp32| {(logits.float() - reference).abs().max():.3f}"
                  f" (logit scale {reference.abs().max():.2f})")

    def no_grad(function):
        def call(**batch_inputs):
            with torch.no_grad():
                return function(**batch_inputs)
        return call

    samples = interleaved_samples({name: no_grad(fn) for name, fn in candidates.items()}, inputs, warmup=2, repeats=8)
    medians = {name: 1000 * statistics.median(seconds) for name, seconds in samples.items()}
    bf16 = medians["ipex+jit:bf16"]
    print(f"{attention} {seq}x{batch}: " + ", ".join(f"{name} {ms:.0f} ms ({bf16 / ms:.2f}x bf16)"
                                                  for name, ms in medians.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa")
    parser.add_argument("--shapes", default="384x1,384x8", help="SEQxBATCH list (default: %(default)s)")
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    for shape in arguments.shapes.split(","):
        seq, batch = (int(part) for part in shape.split("x"))
        compare(arguments.attention, seq, batch)


if __name__ == "__main__":
    main()
