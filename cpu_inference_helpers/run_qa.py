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

import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from cpu_inference_helpers.infra.cli import DataclassArgumentParser, UsageError
from cpu_inference_helpers.infra.cli_logging import PACKAGE_PROGRESS
from cpu_inference_helpers.models import DEFAULT_MODEL
from cpu_inference_helpers.modes import ModeSpec, parse_mode_list
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

DATA = "model and data (run_qa.py names)"
EVALUATION = "evaluation (TrainingArguments names)"
COMPARISON = "comparison"
INT8 = "int8 modes (e.g. --modes eager,ipex+jit:bf16,ipex+jit:int8)"
ENGINE = "engine (Ray Data batch inference; needs the ray extra: pip install 'cpu-inference-tutorial[ray]')"
#: The help section of each EvaluationSettings flag that is not about the model and the data.
SETTINGS_SECTIONS = {"per_device_eval_batch_size": EVALUATION, "attn_implementation": COMPARISON,
                     "warmup_steps": COMPARISON, "allow_emulated_bf16": COMPARISON, "seed": COMPARISON,
                     "calibration_file": INT8, "calibration_windows": INT8}
#: The Trainer's switches that choose one mode, in the order their messages name them.
TRAINER_MODE_FLAGS = ("jit_mode_eval", "use_ipex", "bf16", "torch_compile")
USE_IPEX_HELP = (
    "Intel Extension for PyTorch: this tool applies ipex.optimize (with --bf16: ipex.optimize(dtype=bfloat16), "
    "which converts the weights to bf16 and moves more answers than autocast alone). The transformers 4.56 "
    "Trainer's --use_ipex only warns in an evaluation: it prepares the model with accelerate's prepare_model, "
    "which never applied ipex.optimize (accelerate < 1.8 did so only in prepare(), the training path; 1.8 "
    "removed it)"
)


def _flag(help_text: str | None = None, section: str = EVALUATION, **more: object) -> dict[str, object]:
    """The metadata of one of run_qa's own flags."""
    return {"help": help_text, "group": section, **more}


@dataclass
class RunQaFlags:
    """run_qa's flags beyond the evaluation settings: the Trainer's switches, the mode list, the output, the engine.

    Checks the flags that contradict each other (a ValueError, which the command line reports as a usage error).
    """

    do_eval: bool = field(default=False, metadata=_flag("run the evaluation (required, as in run_qa.py)"))
    do_train: bool = field(default=False, metadata=_flag(hidden=True))
    do_predict: bool = field(default=False, metadata=_flag(hidden=True))
    output_dir: str = field(default="results/qa", metadata=_flag("where the results go (default: %(default)s)"))
    no_cuda: bool = field(default=False, metadata=_flag("accepted for compatibility: this tool runs on CPU"))
    use_cpu: bool = field(default=False, metadata=_flag("accepted for compatibility: this tool runs on CPU"))
    jit_mode_eval: bool = field(default=False, metadata=_flag("TorchScript trace + freeze for evaluation"))
    use_ipex: bool = field(default=False, metadata=_flag(USE_IPEX_HELP))
    bf16: bool = field(default=False, metadata=_flag("bf16 mixed precision (CPU autocast)"))
    torch_compile: bool = field(default=False, metadata=_flag(
        "torch.compile with Inductor (the modern successor of --jit_mode_eval)"))
    modes: list[ModeSpec] | None = field(default=None, metadata=_flag(
        "comma-separated modes to compare (eager fp32 is always added as the reference); default where IPEX "
        f"works: {LEGACY_DEFAULT_MODES}; without IPEX (the modern stack): {MODERN_DEFAULT_MODES}",
        COMPARISON, parse=parse_mode_list))
    num_threads: int | None = field(default=None, metadata=_flag(
        "torch intra-op threads (default: torch's choice)", COMPARISON))
    engine: str = field(default="process", metadata=_flag(
        "process: every mode in this process (default); ray: Ray Data's map_batches over a pool of worker "
        "actors, each loading the model once; same answers, same files", ENGINE, choices=["process", "ray"]))
    ray_address: str | None = field(default=None, metadata=_flag(
        "an existing cluster (host:port of `ray start --head`, ray://host:port, or auto); default: start a "
        "local cluster with this machine's CPUs", ENGINE))
    workers: int | None = field(default=None, metadata=_flag(
        "Ray actors (default: the cluster's CPUs / --threads_per_worker)", ENGINE))
    threads_per_worker: int = field(default=1, metadata=_flag(
        "CPUs (torch threads) per actor (default: %(default)s)", ENGINE))
    questions_per_task: int = field(default=16, metadata=_flag(
        "questions per map_batches call, never split across calls (default: %(default)s)", ENGINE))

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """The first flag this tool cannot honour, with what to do instead; None when all can be."""
        if not self.do_eval:
            return "nothing to do: pass --do_eval (this tool evaluates; it does not train or predict)"
        if self.do_train or self.do_predict:
            return "--do_train / --do_predict are not supported: this tool only evaluates (--do_eval)"
        if self.num_threads is not None:
            from cpu_inference_helpers.infra.cpus import usable_cpu_count

            cpus = usable_cpu_count()
            if not 1 <= self.num_threads <= cpus:
                return (f"--num_threads must be between 1 and the {cpus} CPUs this process may use, not "
                        f"{self.num_threads} (more threads than CPUs only makes them wait for each other)")
        ray_flags = [name for name in ("ray_address", "workers") if getattr(self, name) is not None]
        if self.engine != "ray" and ray_flags:
            return f"--{' --'.join(ray_flags)} need --engine ray"
        if self.engine == "ray" and self.num_threads is not None:
            return "--num_threads sets this process's threads; with --engine ray use --threads_per_worker"
        return None


def build_parser() -> DataclassArgumentParser:
    """run_qa's command line: EvaluationSettings' fields and RunQaFlags', under run_qa.py's names."""
    parser = DataclassArgumentParser(prog="python -m cpu_inference_helpers.run_qa", description=__doc__)
    parser.add_dataclass(EvaluationSettings, title=DATA, exclude=("modes",), groups=SETTINGS_SECTIONS)
    parser.add_dataclass(RunQaFlags)
    return parser


def resolve_modes(flags: RunQaFlags) -> list[ModeSpec]:
    """The modes of --modes or of the Trainer-style flags; contradicting flags are a UsageError."""
    trainer_flags = [name for name in TRAINER_MODE_FLAGS if getattr(flags, name)]
    if flags.modes is not None:  # given: parse_mode_list refused an empty list already
        if trainer_flags:
            raise UsageError(
                f"--modes lists the modes itself; drop --{' --'.join(trainer_flags)} "
                "(write a precision per mode instead, e.g. --modes eager,ipex+jit:bf16)"
            )
        return flags.modes
    if not trainer_flags:
        return parse_mode_list(default_modes())
    precision = "bf16" if flags.bf16 else "fp32"
    if flags.torch_compile:
        if flags.jit_mode_eval or flags.use_ipex:
            raise UsageError("--torch_compile replaces --jit_mode_eval/--use_ipex: pass one of them, or use --modes")
        return [ModeSpec("compile", precision)]
    mode = {(False, False): "eager", (True, False): "jit", (False, True): "ipex", (True, True): "ipex+jit"}[
        (flags.jit_mode_eval, flags.use_ipex)
    ]
    return [ModeSpec(mode, precision)]


def engine_from(flags: RunQaFlags) -> RayEngine | None:
    """The Ray engine the flags ask for (None: this process); a setting out of range is a ValueError."""
    if flags.engine != "ray":
        return None
    from cpu_inference_helpers.infra.cpus import usable_cpu_count
    from cpu_inference_helpers.qa.ray_engine import RayEngine

    workers = flags.workers
    if workers is None:  # the local cluster's size; on a remote one, say how many
        if flags.ray_address:
            raise UsageError("with --ray_address, say how many workers to start (--workers N)")
        workers = max(1, usable_cpu_count() // max(1, flags.threads_per_worker))
    return RayEngine(flags.ray_address, workers, flags.threads_per_worker, flags.questions_per_task)


def parse_command_line(argv: list[str] | None = None
                       ) -> tuple[DataclassArgumentParser, RunQaFlags, EvaluationSettings, RayEngine | None]:
    """The parser, the flags, the evaluation settings and the engine of `argv`; a bad flag exits with status 2."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    flags = parser.build(RunQaFlags, namespace)
    with parser.usage_errors():
        settings = parser.build(EvaluationSettings, namespace, modes=resolve_modes(flags))
        if settings.dataset_name and settings.validation_file:
            raise UsageError("pass either --dataset_name or --validation_file, not both")
        engine = engine_from(flags)
    return parser, flags, settings, engine


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.run_qa`; returns the exit status."""
    parser, flags, settings, engine = parse_command_line(argv)
    return parser.run(lambda: evaluate_and_report(flags, settings, engine), log=PACKAGE_PROGRESS,
                      errors=(SquadFormatError, OSError, RuntimeError, ValueError))  # OSError: files, Hub, output


def evaluate_and_report(flags: RunQaFlags, settings: EvaluationSettings, engine: RayEngine | None) -> int:
    """Run the evaluation, print the table and the notes, and say what was written."""
    if flags.num_threads:
        torch.set_num_threads(flags.num_threads)
    evaluation = evaluate_modes(settings, flags.output_dir, engine)
    results, title, output_dir = evaluation.results, evaluation.title, flags.output_dir

    print(f"\n{title}\n")
    print(format_table(results))
    print(
        "\nsamples = tokenized windows (one question may span several); throughput excludes set-up "
        "(optimisation, tracing, warm-up), which 'setup s' reports; break-even = samples after which the "
        "set-up has paid for itself against eager; modes ran interleaved batch by batch"
        + (" within each Ray worker, and samples/s = all windows / the wall-clock span from the first worker's "
           "first timed batch to the last worker's last (each mode's share by its busy time)" if engine else "")
        + "; dEM/dF1 = change against eager fp32 in points, dF1 with the 95% half-width of the paired "
        "per-question change (a change inside it is not distinguishable from zero on this many questions)."
    )
    if evaluation.random_weights:
        print(
            f"\nNOTE: {settings.model_name_or_path} has random weights: the speed numbers are real, EM/F1 are "
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
