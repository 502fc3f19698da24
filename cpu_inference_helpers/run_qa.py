"""SQuAD evaluation across eager / jit / IPEX / bf16 in one run: one command, one table, one plot.

Accepts the flags of transformers' examples/pytorch/question-answering/run_qa.py with the
same names and meaning, e.g. the classic

    python -m cpu_inference_helpers.run_qa --model_name_or_path csarron/bert-base-uncased-squad-v1 \\
        --dataset_name squad --do_eval --max_seq_length 384 --doc_stride 128 \\
        --no_cuda --jit_mode_eval --use_ipex --output_dir /tmp/qa

runs that mode (and eager fp32 beside it, as the reference); `--modes` runs several at once:

    python -m cpu_inference_helpers.run_qa --do_eval --modes eager,jit,ipex+jit,ipex+jit:bf16

Without --model_name_or_path / --dataset_name / --validation_file it runs offline: the
project's own fine-tuned QA checkpoint `minilm-squad` (shipped in the package; real
EM/F1) on the packaged official SQuAD v1.1 dev set (10,570 questions; --max_eval_samples takes the
first N). `--model_name_or_path random-bert-base` gives a bert-base-shaped model with random
weights for speed work (real speed, meaningless EM/F1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

import torch

from cpu_inference_helpers.infra.cli_logging import configure_cli_logging
from cpu_inference_helpers.models import DEFAULT_MODEL
from cpu_inference_helpers.modes import ModeSpec, parse_mode_list
from cpu_inference_helpers.qa.calibration import DEFAULT_CALIBRATION_WINDOWS
from cpu_inference_helpers.qa.data import SquadFormatError
from cpu_inference_helpers.qa.evaluation import (
    LEGACY_DEFAULT_MODES,
    MODERN_DEFAULT_MODES,
    REAL_CHECKPOINT_COMMAND,
    EvaluationSettings,
    default_modes,
    evaluate_modes,
)
from cpu_inference_helpers.qa.report import format_table

if TYPE_CHECKING:
    from cpu_inference_helpers.qa.ray_engine import RayEngine

logger = logging.getLogger("cpu_inference_helpers.run_qa")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cpu_inference_helpers.run_qa",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    data = parser.add_argument_group("model and data (run_qa.py names)")
    data.add_argument("--model_name_or_path", default=DEFAULT_MODEL,
                      help="Hub id, local folder, the shipped fine-tuned checkpoint minilm-squad, or an "
                           "offline random model (random-bert-base, random-bert-tiny) (default: %(default)s)")
    data.add_argument("--dataset_name", help="a datasets name such as 'squad' (needs the Hub or its cache)")
    data.add_argument("--dataset_config_name")
    data.add_argument("--validation_file", help="a SQuAD-format JSON / JSON lines file (.gz/.xz allowed)")
    data.add_argument("--max_seq_length", type=int, default=384)
    data.add_argument("--doc_stride", type=int, default=128)
    data.add_argument("--max_eval_samples", type=int, help="evaluate only the first N questions")
    data.add_argument("--n_best_size", type=int, default=20)
    data.add_argument("--max_answer_length", type=int, default=30)
    run = parser.add_argument_group("evaluation (TrainingArguments names)")
    run.add_argument("--do_eval", action="store_true", help="run the evaluation (required, as in run_qa.py)")
    run.add_argument("--do_train", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--do_predict", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--per_device_eval_batch_size", type=int, default=8)
    run.add_argument("--output_dir", default="results/qa")
    run.add_argument("--no_cuda", action="store_true", help="accepted for compatibility: this tool runs on CPU")
    run.add_argument("--use_cpu", action="store_true", help="accepted for compatibility: this tool runs on CPU")
    run.add_argument("--jit_mode_eval", action="store_true", help="TorchScript trace + freeze for evaluation")
    run.add_argument("--use_ipex", action="store_true",
                     help="Intel Extension for PyTorch: this tool applies ipex.optimize (with --bf16: "
                          "ipex.optimize(dtype=bfloat16), which converts the weights to bf16 and moves more answers "
                          "than autocast alone). The transformers 4.56 Trainer's --use_ipex only warns in an "
                          "evaluation: it prepares the model with accelerate's prepare_model, which never applied "
                          "ipex.optimize (accelerate < 1.8 did so only in prepare(), the training path; 1.8 removed "
                          "it)")
    run.add_argument("--bf16", action="store_true", help="bf16 mixed precision (CPU autocast)")
    run.add_argument("--torch_compile", action="store_true",
                     help="torch.compile with Inductor (the modern successor of --jit_mode_eval)")
    compare = parser.add_argument_group("comparison")
    compare.add_argument("--modes", help="comma-separated modes to compare (eager fp32 is always added as the "
                                         f"reference); default where IPEX works: {LEGACY_DEFAULT_MODES}; "
                                         f"without IPEX (the modern stack): {MODERN_DEFAULT_MODES}")
    compare.add_argument("--attn_implementation", choices=["sdpa", "eager"], default="sdpa",
                         help="attention kernel: sdpa (PyTorch fused attention) or eager")
    compare.add_argument("--num_threads", type=int, help="torch intra-op threads (default: torch's choice)")
    compare.add_argument("--warmup_steps", type=int, default=2, help="untimed passes per mode before timing")
    compare.add_argument("--allow_emulated_bf16", action="store_true",
                         help="run bf16 even on CPUs without native bf16 instructions")
    compare.add_argument("--seed", type=int, default=0, help="weight seed of the offline random models")
    int8 = parser.add_argument_group("int8 modes (e.g. --modes eager,ipex+jit:bf16,ipex+jit:int8)")
    int8.add_argument("--calibration_file",
                      help="SQuAD-format text to calibrate static int8 on; it must share no question or context "
                           "with the evaluated ones (default: the packaged 256 SQuADShifts new_wiki questions)")
    int8.add_argument("--calibration_windows", type=int, default=DEFAULT_CALIBRATION_WINDOWS,
                      help="windows to calibrate on (default: %(default)s)")
    engine = parser.add_argument_group(
        "engine (Ray Data batch inference; needs the ray extra: pip install 'cpu-inference-tutorial[ray]')")
    engine.add_argument("--engine", choices=["process", "ray"], default="process",
                        help="process: every mode in this process (default); ray: Ray Data's map_batches over a "
                             "pool of worker actors, each loading the model once; same answers, same files")
    engine.add_argument("--ray_address",
                        help="an existing cluster (host:port of `ray start --head`, ray://host:port, or auto); "
                             "default: start a local cluster with this machine's CPUs")
    engine.add_argument("--workers", type=int, help="Ray actors (default: the cluster's CPUs / --threads_per_worker)")
    engine.add_argument("--threads_per_worker", type=int, default=1,
                        help="CPUs (torch threads) per actor (default: %(default)s)")
    engine.add_argument("--questions_per_task", type=int, default=16,
                        help="questions per map_batches call, never split across calls (default: %(default)s)")
    return parser


def resolve_modes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[ModeSpec]:
    """Turn --modes or the Trainer-style flags into mode specs; contradictions end with a message."""
    trainer_flags = [flag for flag in ("jit_mode_eval", "use_ipex", "bf16", "torch_compile") if getattr(args, flag)]
    if args.modes is not None:  # given, even empty: an empty list is an error, not the defaults
        if trainer_flags:
            parser.error(
                f"--modes lists the modes itself; drop --{' --'.join(trainer_flags)} "
                "(write a precision per mode instead, e.g. --modes eager,ipex+jit:bf16)"
            )
        try:
            return parse_mode_list(args.modes)
        except ValueError as error:
            parser.error(str(error))
    if not trainer_flags:
        return parse_mode_list(default_modes())
    precision = "bf16" if args.bf16 else "fp32"
    if args.torch_compile:
        if args.jit_mode_eval or args.use_ipex:
            parser.error("--torch_compile replaces --jit_mode_eval/--use_ipex: pass one of them, or use --modes")
        return [ModeSpec("compile", precision)]
    mode = {(False, False): "eager", (True, False): "jit", (False, True): "ipex", (True, True): "ipex+jit"}[
        (args.jit_mode_eval, args.use_ipex)
    ]
    return [ModeSpec(mode, precision)]


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject flags this tool cannot honour, with a message that says what to do instead."""
    if not args.do_eval:
        parser.error("nothing to do: pass --do_eval (this tool evaluates; it does not train or predict)")
    if args.do_train or args.do_predict:
        parser.error("--do_train / --do_predict are not supported: this tool only evaluates (--do_eval)")
    if args.dataset_name and args.validation_file:
        parser.error("pass either --dataset_name or --validation_file, not both")
    if args.num_threads is not None:
        from cpu_inference_helpers.infra.cpus import usable_cpu_count

        cpus = usable_cpu_count()
        if not 1 <= args.num_threads <= cpus:
            parser.error(f"--num_threads must be between 1 and the {cpus} CPUs this process may use, not "
                         f"{args.num_threads} (more threads than CPUs only makes them wait for each other)")
    ray_flags = [flag for flag in ("ray_address", "workers") if getattr(args, flag) is not None]
    if args.engine != "ray" and ray_flags:
        parser.error(f"--{' --'.join(ray_flags)} need --engine ray")
    if args.engine == "ray" and args.num_threads is not None:
        parser.error("--num_threads sets this process's threads; with --engine ray use --threads_per_worker")
    # the evaluation's own settings (window sizes, batch, calibration) are checked by EvaluationSettings


def settings_from(parser: argparse.ArgumentParser, args: argparse.Namespace, specs: list[ModeSpec]
                  ) -> EvaluationSettings:
    """The evaluation settings of these flags; a setting out of range ends with its message (checked there)."""
    try:
        return EvaluationSettings(
            model_name_or_path=args.model_name_or_path, dataset_name=args.dataset_name,
            dataset_config_name=args.dataset_config_name, validation_file=args.validation_file,
            max_seq_length=args.max_seq_length, doc_stride=args.doc_stride, max_eval_samples=args.max_eval_samples,
            n_best_size=args.n_best_size, max_answer_length=args.max_answer_length,
            per_device_eval_batch_size=args.per_device_eval_batch_size, modes=specs,
            attn_implementation=args.attn_implementation, warmup_steps=args.warmup_steps,
            allow_emulated_bf16=args.allow_emulated_bf16, seed=args.seed,
            calibration_file=args.calibration_file, calibration_windows=args.calibration_windows,
        )
    except ValueError as error:
        parser.error(str(error))


def engine_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RayEngine | None:
    """The Ray engine these flags ask for (None: this process); a setting out of range ends with its message."""
    if args.engine != "ray":
        return None
    from cpu_inference_helpers.infra.cpus import usable_cpu_count
    from cpu_inference_helpers.qa.ray_engine import RayEngine

    workers = args.workers
    if workers is None:  # the local cluster's size; on a remote one, say how many
        if args.ray_address:
            parser.error("with --ray_address, say how many workers to start (--workers N)")
        workers = max(1, usable_cpu_count() // max(1, args.threads_per_worker))
    try:
        return RayEngine(args.ray_address, workers, args.threads_per_worker, args.questions_per_task)
    except ValueError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.run_qa`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(parser, args)
    settings = settings_from(parser, args, resolve_modes(parser, args))
    engine = engine_from(parser, args)
    configure_cli_logging(verbose_loggers=("cpu_inference_helpers",))
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    try:
        evaluation = evaluate_modes(settings, args.output_dir, engine)
    except (SquadFormatError, OSError, RuntimeError, ValueError) as error:  # OSError: files, Hub, output folder
        print(f"error: {error}", file=sys.stderr)
        return 2
    results, title, output_dir = evaluation.results, evaluation.title, args.output_dir

    print(f"\n{title}\n")
    print(format_table(results))
    print(
        "\nsamples = tokenized windows (one question may span several); throughput excludes set-up "
        "(optimisation, tracing, warm-up), which 'setup s' reports; break-even = samples after which the "
        "set-up has paid for itself against eager; modes ran interleaved batch by batch"
        + (" within each Ray worker, and samples/s = windows / (the workers' summed batch time / workers)"
           if engine else "")
        + "; dEM/dF1 = change against eager fp32 in points, dF1 with the 95% half-width of the paired "
        "per-question change (a change inside it is not distinguishable from zero on this many questions)."
    )
    if evaluation.random_weights:
        print(
            f"\nNOTE: {args.model_name_or_path} has random weights: the speed numbers are real, EM/F1 are "
            "meaningless.\n"
            f"Real answers offline: --model_name_or_path {DEFAULT_MODEL} (the default); with the Hub:\n"
            f"  {REAL_CHECKPOINT_COMMAND}"
        )
    print(f"\nwrote {output_dir}/results.json, results.csv, predictions.json, comparison.png, and per mode "
          f"run_qa.py's eval_predictions.json, eval_nbest_predictions.json, eval_results.json in "
          f"{output_dir}/<mode>/ ({', '.join(result.folder for result in results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
