"""Try torch.export + AOTInductor on a decoder's static-cache decode step (docs/generation.md records the outcome).

    python scripts/export_decode_step.py [--strict]

A 2-layer random Llama (so a failure is the mechanism's, not the model's size): the step over a `StaticCache`
whose key and value tensors are registered as buffers of the wrapper, exported with a dynamic sequence length,
compiled into a package, and its greedy tokens compared with `model.generate`'s, twice (the second run checks
that the package keeps and overwrites its cache). Prints each stage's outcome; exit status 1 when a stage fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cpu_inference_helpers.generation.decoding import cache_argument, static_cache
from cpu_inference_helpers.infra.errors import error_summary

BATCH, CAPACITY, PROMPT, NEW_TOKENS = 1, 64, 12, 10


class CachedDecodeStep(torch.nn.Module):
    """(input ids, cache positions) -> last logits, over a static cache held as buffers."""

    def __init__(self, model: torch.nn.Module, batch: int, capacity: int) -> None:
        super().__init__()
        self.model, self.cache, self.cache_name = model, static_cache(model, batch, capacity), cache_argument(model)
        with torch.no_grad():  # the cache layers allocate their tensors at their first update
            model(input_ids=torch.zeros(batch, 1, dtype=torch.long), cache_position=torch.tensor([0]), use_cache=True,
                  **{self.cache_name: self.cache})
        for index, layer in enumerate(self.cache.layers):
            layer.keys.zero_()
            layer.values.zero_()
            self.register_buffer(f"key_{index}", layer.keys, persistent=False)
            self.register_buffer(f"value_{index}", layer.values, persistent=False)

    def forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, cache_position=cache_position, use_cache=True, logits_to_keep=1,
                          **{self.cache_name: self.cache}).logits


def greedy(step, prompt: torch.Tensor) -> torch.Tensor:
    logits, tokens = step(prompt, torch.arange(PROMPT)), []
    for index in range(NEW_TOKENS):
        tokens.append(logits[:, -1].argmax(-1))
        logits = step(tokens[-1][:, None], torch.tensor([PROMPT + index]))
    return torch.stack(tokens, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="strict (TorchDynamo) export instead of non-strict")
    strict = parser.parse_args().strict
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(config).eval()
    prompt = torch.randint(0, 512, (BATCH, PROMPT))
    sequence = torch.export.Dim("sequence", min=1, max=CAPACITY - 1)
    print(f"torch {torch.__version__}, strict export: {strict}")
    started = time.perf_counter()
    try:
        with torch.no_grad():
            program = torch.export.export(
                CachedDecodeStep(model, BATCH, CAPACITY).eval(), (),
                {"input_ids": prompt[:, :2], "cache_position": torch.arange(2)},
                dynamic_shapes={"input_ids": {1: sequence}, "cache_position": {0: sequence}}, strict=strict)
        print(f"export: ok ({time.perf_counter() - started:.1f} s)")
        package = Path(tempfile.mkdtemp()) / "decode_step.pt2"
        torch._inductor.aoti_compile_and_package(program, package_path=str(package),
                                                 inductor_configs={"freezing": True})
        runner = torch._inductor.aoti_load_package(str(package))
        print(f"AOTInductor package: ok ({time.perf_counter() - started:.1f} s)")
    except Exception as error:  # noqa: BLE001 - the outcome is what this script reports
        print(f"failed: {error_summary(error, 400)}")
        return 1
    with torch.no_grad():
        def packaged(ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            return runner(input_ids=ids, cache_position=positions)

        first, second = greedy(packaged, prompt), greedy(packaged, prompt)
        reference = model.generate(prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    same = torch.equal(first, reference[:, PROMPT:]) and torch.equal(second, reference[:, PROMPT:])
    print(f"greedy tokens equal to model.generate's, twice: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
