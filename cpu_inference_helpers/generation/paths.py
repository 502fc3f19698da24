"""The generation paths, one registry entry each: name -> builder(fp32 model) -> `PreparedPath`.

Every builder returns what it prepared and, as `Step`s (also logged), what it applied and why it fell back:

- `eager`: the fp32 model, a dynamic cache (grows a position per token).
- `compile`: the same fp32 weights; a static cache (allocated once for prompt + new tokens) and the decode step
  compiled with `torch.compile(dynamic=False)` once per shape and reused for every token (the prefill runs eager).
  `compile_count()` reads Dynamo's graph counter so a caller can check that nothing recompiles as the sequence grows.
- `eager:bf16`: a bf16 copy of the weights (half the bytes read per token), not autocast: autocast would keep fp32
  weights and convert them at every step, which reads more memory, not less.
- `int8-dynamic`: `torch.ao.quantization.quantize_dynamic` on every Linear (lm_head included).
- `int8-weight-only`, `int4-weight-only`: torchao `quantize_` (needs torchao; falls back to `int8-dynamic`).
- `ipex-llm`: `ipex.llm.optimize` (legacy stack only; falls back to `eager` without a usable IPEX); it runs through
  `model.generate`, since IPEX replaces the cache with its own.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from cpu_inference_helpers.generation.decoding import (
    TokenHook,
    dynamic_cache,
    greedy_decode,
    model_step,
    static_cache,
)
from cpu_inference_helpers.infra.errors import error_summary
from cpu_inference_helpers.record import Step
from cpu_inference_helpers.techniques.ipex_support import load_ipex, probe_ipex

logger = logging.getLogger(__name__)

REFERENCE = "eager"
#: int4 groups of 32 weights, as the GGUF's own Q4_1 blocks (576, SmolLM2's width, is no multiple of 128, and torchao
#: leaves a Linear whose width its group size does not divide unquantized).
INT4_GROUP_SIZE = 32
TORCHAO_HINT = "pip install torchao (the modern stack's requirements/modern.txt pins it)"

#: (input ids, max new tokens, stop at eos, per-token hook, cache capacity) -> new tokens (B x n).
#: `capacity` (default prompt + new tokens) lets a short warm-up run use the cache shape of the timed run.
GenerateFn = Callable[..., torch.Tensor]


@dataclass
class PreparedPath:
    """A generation path ready to run, with what it runs as and every step taken to build it."""

    name: str
    ran_as: str
    generate: GenerateFn
    logits: Callable[[torch.Tensor], torch.Tensor] | None  # full-sequence logits (B x n x vocab), for accuracy
    weight_bits: float  # bits per Linear weight read at each decode step (roofline)
    steps: list[Step] = field(default_factory=list)
    setup_seconds: float = 0.0
    compile_count: Callable[[], int] | None = None  # graphs compiled so far (compile path)
    kv_value_bytes: int = 4  # bytes per cached key/value element (roofline)

    def note(self, step: str, reason: str, level: int = logging.INFO) -> None:
        """Record a step and log it."""
        self.steps.append(Step(step, reason))
        logger.log(level, "%s: %s: %s", self.name, step, reason)


def _eos(model: torch.nn.Module) -> int | None:
    eos = getattr(model.generation_config, "eos_token_id", None)
    return eos[0] if isinstance(eos, list) else eos


def _full_logits(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def logits(input_ids: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(input_ids=input_ids, use_cache=False).logits.float()

    return logits


def _loop_generate(model: torch.nn.Module, decode: Callable | None = None, cache_factory=dynamic_cache,
                   reuse_caches: bool = False) -> GenerateFn:
    """Our greedy loop on `model`: eager prefill; `decode` (default: eager) for each new token."""
    step = model_step(model)
    decode = decode or step
    eos = _eos(model)
    caches: dict[tuple[int, int], object] = {}

    def generate(input_ids: torch.Tensor, max_new_tokens: int, stop_at_eos: bool = False,
                 on_token: TokenHook | None = None, capacity: int | None = None) -> torch.Tensor:
        key = (input_ids.shape[0], max(capacity or 0, input_ids.shape[1] + max_new_tokens))
        if reuse_caches and key in caches:  # the compiled step's guards hold for the same cache object
            cache = caches[key]
            with torch.inference_mode():  # its tensors were made under inference mode
                cache.reset()
        else:
            cache = cache_factory(model, *key)
            if reuse_caches:
                caches[key] = cache
        return greedy_decode(step, decode, input_ids, max_new_tokens, cache, eos, stop_at_eos, on_token)

    return generate


def build_eager(model: torch.nn.Module) -> PreparedPath:
    """The reference: fp32 weights, dynamic cache, no compilation."""
    path = PreparedPath("eager", "eager", _loop_generate(model), _full_logits(model), 32.0)
    path.note("cache", "dynamic cache (one position appended per token)")
    return path


def dynamo_graph_count() -> int:
    """Graphs Dynamo compiled in this process so far (every recompile adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def build_compile(model: torch.nn.Module) -> PreparedPath:
    """Static cache + `torch.compile` of the decode step, reused across tokens; eager decode if compiling fails."""
    step = model_step(model)
    compiled = torch.compile(step, dynamic=False, fullgraph=True)
    path = PreparedPath("compile", "compile", _loop_generate(model), _full_logits(model), 32.0,
                        compile_count=dynamo_graph_count)
    state = {"failed": False}

    def decode(input_ids: torch.Tensor, cache: object, cache_position: torch.Tensor) -> torch.Tensor:
        if state["failed"]:
            return step(input_ids, cache, cache_position)
        try:
            return compiled(input_ids, cache, cache_position)
        except Exception as error:  # a compiler error surfaces at the first call: fall back, once, with the reason
            state["failed"] = True
            path.ran_as = "eager (static cache)"
            path.note("compile", f"torch.compile failed, decoding eagerly: {error_summary(error, 300)}",
                      logging.WARNING)
            return step(input_ids, cache, cache_position)

    path.generate = _loop_generate(model, decode, static_cache, reuse_caches=True)
    path.note("cache", "static cache sized prompt + new tokens, one per (batch, length), reset between runs")
    path.note("compile", "torch.compile(dynamic=False, fullgraph=True) of the decode step; prefill eager")
    return path


def build_bf16(model: torch.nn.Module) -> PreparedPath:
    """A bf16 copy of the weights (and so of the cache and activations)."""
    bf16 = copy.deepcopy(model).to(torch.bfloat16).eval()
    path = PreparedPath("eager:bf16", "eager:bf16", _loop_generate(bf16), _full_logits(bf16), 16.0, kv_value_bytes=2)
    path.note("precision", "bf16 weights, cache and activations (a copy; autocast would keep reading fp32 weights)")
    return path


def build_int8_dynamic(model: torch.nn.Module) -> PreparedPath:
    """`quantize_dynamic` on every Linear with per-channel weight scales; activations quantized per call.

    Per-channel, not the per-tensor default (`techniques.quantization.quantize_dynamic_linear`, right for the BERT
    reader): one scale per 49152 x 576 lm_head or per projection lets this small decoder's outlier channels
    flatten the rest (perplexity x3.7 on the SQuAD text, 25% top-1 agreement, measured 2026-12-04).
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's eager-mode API announces its deprecation
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                     dtype=torch.qint8)
    path = PreparedPath("int8-dynamic", "int8-dynamic", _loop_generate(quantized), _full_logits(quantized), 8.0)
    path.note("int8", "torch.ao.quantization.quantize_dynamic(qint8, per-channel weight scales) on every Linear, "
              "lm_head included")
    return path


def _torchao_config(bits: int) -> tuple[object, str]:
    """The torchao weight-only config for CPU, and its description; raises when this torchao has none."""
    import torchao.quantization as tq

    if bits == 8:
        return tq.Int8WeightOnlyConfig(), "Int8WeightOnlyConfig (per-channel int8 weights)"
    group = INT4_GROUP_SIZE
    attempts: list[tuple[str, Callable[[], object]]] = []
    try:  # torchao >= 0.15: the CPU int4 layout (Int4OpaqueTensor) lives in the prototype namespace
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
        attempts.append((f"PrototypeInt4WeightOnlyConfig(group_size={group}) (Int4OpaqueTensor, CPU)",
                         lambda: PrototypeInt4WeightOnlyConfig(group_size=group)))
    except ImportError:
        pass
    attempts.append((f"Int4WeightOnlyConfig(group_size={group}, int4_packing_format='opaque')",
                     lambda: tq.Int4WeightOnlyConfig(group_size=group, int4_packing_format="opaque")))
    try:  # older torchao
        from torchao.dtypes import Int4CPULayout
        attempts.append((f"Int4WeightOnlyConfig(group_size={group}, layout=Int4CPULayout())",
                         lambda: tq.Int4WeightOnlyConfig(group_size=group, layout=Int4CPULayout())))
    except ImportError:
        pass
    errors = []
    for name, make in attempts:
        try:
            return make(), name
        except (TypeError, ValueError, AttributeError) as error:
            errors.append(f"{name}: {error_summary(error, 120)}")
    raise RuntimeError("no CPU int4 weight-only config in this torchao: " + "; ".join(errors))


def _build_torchao(model: torch.nn.Module, name: str, bits: int) -> PreparedPath:
    if importlib.util.find_spec("torchao") is None:
        path = build_int8_dynamic(model)
        path.name = name
        path.note("torchao", f"torchao is not installed, ran int8-dynamic instead: {TORCHAO_HINT}", logging.WARNING)
        return path
    try:
        from torchao.quantization import quantize_

        config, described = _torchao_config(bits)
        quantized = copy.deepcopy(model).eval()
        if bits == 4:  # torchao's CPU int4 kernels take bf16 activations
            quantized = quantized.to(torch.bfloat16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_(quantized, config)
        quantized(input_ids=torch.ones(1, 4, dtype=torch.long), use_cache=False)  # fail here, not mid-measurement
    except Exception as error:
        path = build_int8_dynamic(model)
        path.name = name
        path.note("torchao", f"torchao quantize_ failed on CPU, ran int8-dynamic instead: {error_summary(error, 300)}",
                  logging.WARNING)
        return path
    path = PreparedPath(name, name, _loop_generate(quantized), _full_logits(quantized),
                        8.0 if bits == 8 else 4 + 32 / INT4_GROUP_SIZE,
                        kv_value_bytes=4 if bits == 8 else 2)
    path.note("torchao", f"quantize_ with {described} on every Linear, lm_head included"
              + ("; bf16 activations" if bits == 4 else ""))
    return path


def build_int8_weight_only(model: torch.nn.Module) -> PreparedPath:
    """torchao int8 weight-only Linear layers (activations stay fp32)."""
    return _build_torchao(model, "int8-weight-only", 8)


def build_int4_weight_only(model: torch.nn.Module) -> PreparedPath:
    """torchao int4 weight-only Linear layers, groups of 32 (bf16 activations)."""
    return _build_torchao(model, "int4-weight-only", 4)


def _hf_generate(model: torch.nn.Module) -> GenerateFn:
    """Greedy `model.generate` with the same eos rule as our loop, timestamped by a streamer."""
    from transformers import GenerationConfig
    from transformers.generation.streamers import BaseStreamer

    eos = _eos(model)

    class Hook(BaseStreamer):
        def __init__(self, on_token: TokenHook | None) -> None:
            self.on_token, self.calls = on_token, 0

        def put(self, value: torch.Tensor) -> None:
            if self.calls and self.on_token is not None:  # the first call carries the prompt
                self.on_token(self.calls - 1)
            self.calls += 1

        def end(self) -> None:
            pass

    def generate(input_ids: torch.Tensor, max_new_tokens: int, stop_at_eos: bool = False,
                 on_token: TokenHook | None = None, capacity: int | None = None) -> torch.Tensor:
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos,
                                  min_new_tokens=0 if stop_at_eos else max_new_tokens)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IPEX's generate warns about its own tensor construction at every call
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config,
                                    streamer=Hook(on_token))
        return output[:, input_ids.shape[1]:]

    return generate


@contextlib.contextmanager
def _ipex_transformers_shim(steps: list[Step]) -> Iterator[None]:
    """Alias the one transformers class IPEX 2.8's `ipex.llm.optimize` names and transformers >= 4.52 removed, for the
    call only (IPEX 2.8 was validated with transformers 4.51.3; the class is unused by Llama models)."""
    try:
        import transformers.models.mllama.modeling_mllama as mllama
    except ImportError:
        yield
        return
    missing = not hasattr(mllama, "MllamaTextCrossSdpaAttention") and hasattr(mllama, "MllamaTextCrossAttention")
    if missing:
        mllama.MllamaTextCrossSdpaAttention = mllama.MllamaTextCrossAttention
        steps.append(Step("shim", "transformers has no MllamaTextCrossSdpaAttention (merged into "
                                  "MllamaTextCrossAttention in 4.52), which ipex.llm.optimize looks up: aliased "
                                  "during the call"))
    try:
        yield
    finally:
        if missing:
            del mllama.MllamaTextCrossSdpaAttention


def build_ipex_llm(model: torch.nn.Module) -> PreparedPath:
    """`ipex.llm.optimize` (fp32) on a copy, run through `model.generate`; `eager` without a usable IPEX."""
    ipex = load_ipex()
    if ipex is None:
        path = build_eager(model)
        path.name, path.ran_as = "ipex-llm", "eager"
        path.note("ipex", f"IPEX not usable, ran eager instead: {probe_ipex().reason or 'not installed'}",
                  logging.WARNING)
        return path
    shim_steps: list[Step] = []
    try:
        with warnings.catch_warnings(), _ipex_transformers_shim(shim_steps):
            warnings.simplefilter("ignore")
            model_copy = copy.deepcopy(model).eval()
            if not model_copy.config.architectures:  # a GGUF-built config names none; IPEX picks its kernels by it
                model_copy.config.architectures = [type(model_copy).__name__]
            optimized = ipex.llm.optimize(model_copy, dtype=torch.float32, inplace=True, deployment_mode=True)
        path = PreparedPath("ipex-llm", "ipex-llm", _hf_generate(optimized), None, 32.0)
        path.generate(torch.ones(1, 4, dtype=torch.long), 2)  # fail here, not mid-measurement
    except Exception as error:
        path = build_eager(model)
        path.name, path.ran_as = "ipex-llm", "eager"
        path.note("ipex", f"ipex.llm.optimize failed, ran eager instead: {error_summary(error, 300)}", logging.WARNING)
        return path
    for shim in shim_steps:
        path.note(shim.step, shim.reason)
    path.note("ipex", f"ipex.llm.optimize(dtype=fp32, deployment_mode=True), IPEX {ipex.__version__}; "
              "model.generate with IPEX's own cache (its full-sequence logits are not compared)")
    return path


#: The registry: path name -> builder. `eager` is the reference every ratio is taken against.
PATHS: dict[str, Callable[[torch.nn.Module], PreparedPath]] = {
    "eager": build_eager,
    "compile": build_compile,
    "eager:bf16": build_bf16,
    "int8-dynamic": build_int8_dynamic,
    "int8-weight-only": build_int8_weight_only,
    "int4-weight-only": build_int4_weight_only,
    "ipex-llm": build_ipex_llm,
}


def build_path(name: str, model: torch.nn.Module) -> PreparedPath:
    """Build one path by name, timing its set-up; a ValueError lists the known names."""
    if name not in PATHS:
        raise ValueError(f"unknown generation path {name!r}: choose from {', '.join(PATHS)}")
    start = time.perf_counter()
    path = PATHS[name](model)
    path.setup_seconds = time.perf_counter() - start
    return path


def parse_paths(names: list[str]) -> list[str]:
    """The path names in order, `eager` first (added when absent); unknown or repeated names are a ValueError."""
    unknown = [name for name in names if name not in PATHS]
    if unknown:
        raise ValueError(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(PATHS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a path is named twice: {', '.join(names)}")
    return [REFERENCE] + [name for name in names if name != REFERENCE]
