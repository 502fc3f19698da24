"""The training curve: EM/F1 on a fixed slice of the dev set for each snapshot a training run kept.

    python -m cpu_inference_helpers.training.curve --output_dir results/train-squad \\
        --start cpu_inference_helpers/data/minilm-squadshifts --questions 1000

Reads `output_dir/snapshots/step-*.safetensors` (written by `qa.train --snapshot_every N`),
scores each on the first `--questions` questions of the packaged official SQuAD v1.1 dev set
(fp32, eager), and writes `output_dir/curve.json` and `output_dir/curve.png`. Snapshots already
in curve.json with the same slice are not scored again, so it can follow a run in progress.

A run that continued earlier runs (`--init_from`) can be drawn as one curve over all of them:
`--after RUN` (repeatable, oldest first) names the earlier runs' output folders, whose curve.json
must come from the same dev slice; their steps come first, and curve.png marks where each run
starts. The combined points go to `output_dir/curve_all_stages.json`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from cpu_inference_helpers.infra.cli import DataclassArgumentParser
from cpu_inference_helpers.infra.cli_logging import TIMESTAMPED
from cpu_inference_helpers.infra.output_files import atomic_file
from cpu_inference_helpers.infra.plotting import pyplot, save_figure
from cpu_inference_helpers.models import load_offline_tokenizer
from cpu_inference_helpers.qa.data import default_dataset_path, load_squad_file
from cpu_inference_helpers.qa.predict import score_model
from cpu_inference_helpers.shipped_checkpoint import build_from_base, load_shipped_model

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = re.compile(r"step-(\d+)\.safetensors$")


def snapshot_steps(output_dir: Path) -> dict[int, Path]:
    """The snapshots a run kept, by step."""
    found = {}
    for path in sorted((output_dir / "snapshots").glob("step-*.safetensors")):
        match = SNAPSHOT_NAME.search(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def load_snapshot(path: Path):
    """A QA model holding a snapshot's weights (fp16 as saved, evaluated in fp32) over the base encoder."""
    model = build_from_base("sdpa")
    weights = load_file(str(path))
    expected = {name for name, tensor in model.state_dict().items() if tensor.is_floating_point()}
    if not set(weights) <= expected or not any(name.startswith("qa_outputs.") for name in weights):
        raise ValueError(f"{path} does not hold the weights of this QA model")
    model.load_state_dict({name: tensor.float() for name, tensor in weights.items()}, strict=False)
    return model.eval()


def measure_curve(output_dir: Path, questions: int = 1000, start: Path | None = None) -> list[dict[str, Any]]:
    """Score every snapshot (and `start` as step 0) on the first `questions` dev questions; returns the curve."""
    curve_path = output_dir / "curve.json"
    examples = load_squad_file(default_dataset_path())[:questions]
    known = {}
    if curve_path.is_file():
        saved = json.loads(curve_path.read_text(encoding="utf-8"))
        if saved.get("questions") == len(examples):
            known = {point["step"]: point for point in saved["points"]}
    candidates = {step: path for step, path in snapshot_steps(output_dir).items()}
    if start is not None:
        candidates[0] = start
    if not candidates:
        raise FileNotFoundError(f"no snapshots in {output_dir / 'snapshots'}: train with --snapshot_every N")
    tokenizer = load_offline_tokenizer()
    points = []
    for step, path in sorted(candidates.items()):
        if step not in known:
            model = load_shipped_model(folder=path) if path.is_dir() else load_snapshot(path)
            metrics = score_model(model, tokenizer, examples, progress=True)
            known[step] = {"step": step, "exact_match": round(metrics["exact_match"], 2),
                           "f1": round(metrics["f1"], 2)}
            logger.info("step %d: EM %.2f F1 %.2f", step, metrics["exact_match"], metrics["f1"])
        points.append(known[step])
    payload = {"dev_file": default_dataset_path().name, "questions": len(examples), "points": points}
    with atomic_file(curve_path) as partial:  # an interrupted scoring keeps the previous curve, never half of one
        partial.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return points


def load_curve(run_dir: Path) -> dict[str, Any]:
    """A run's saved curve.json (written by `measure_curve`), with a clear error when it has none."""
    curve_path = run_dir / "curve.json"
    if not curve_path.is_file():
        raise FileNotFoundError(f"{curve_path} does not exist: draw that run's curve first "
                                f"(python -m cpu_inference_helpers.training.curve --output_dir {run_dir})")
    return json.loads(curve_path.read_text(encoding="utf-8"))


def chain_stages(curves: list[dict[str, Any]], first_stage: int = 1) -> list[dict[str, Any]]:
    """One curve across consecutive runs, each continuing the one before it (oldest first).

    Each run's steps are offset by the steps of the runs before it, and each point gets its
    `stage` (`first_stage` for the first run given, counting up). A later run's step 0 is the weights the run before it
    ended with, already on the curve, so it is dropped. All curves must be scored on the same
    dev slice; a ValueError says which does not match.
    """
    if not curves:
        raise ValueError("no curves to chain")
    slice_of = {(curve.get("dev_file"), curve.get("questions")) for curve in curves}
    if len(slice_of) > 1:
        raise ValueError(f"the curves were scored on different dev slices {sorted(map(str, slice_of))}: "
                         "re-draw them with the same --questions")
    chained: list[dict[str, Any]] = []
    offset = 0
    for stage, curve in enumerate(curves, start=first_stage):
        points = sorted(curve["points"], key=lambda point: point["step"])
        if stage > first_stage:
            points = [point for point in points if point["step"] > 0]
        chained += [{**point, "step": offset + point["step"], "stage": stage} for point in points]
        if points:
            offset += points[-1]["step"]
    return chained


def plot_curve(points: list[dict[str, Any]], questions: int, path: Path, title: str = "") -> Path | None:
    """Write the F1/EM-against-steps plot (a dashed line where each later stage starts); None without matplotlib."""
    plt = pyplot(path.name)
    if plt is None:
        return None
    figure, axes = plt.subplots(figsize=(6.5, 3.8))
    steps = [point["step"] for point in points]
    axes.plot(steps, [point["f1"] for point in points], marker="o", label="F1")
    axes.plot(steps, [point["exact_match"] for point in points], marker="s", label="EM")
    for stage in sorted({point.get("stage", 0) for point in points})[1:]:
        previous_end = max(point["step"] for point in points if point.get("stage", 0) < stage)
        axes.axvline(previous_end, color="grey", linestyle="--", linewidth=0.8)
        axes.annotate(f"stage {stage}", (previous_end, 0), xycoords=("data", "axes fraction"),
                      xytext=(3, 4), textcoords="offset points", fontsize=8, color="grey")
    axes.set_xlabel("training step")
    axes.set_ylabel(f"score on the first {questions} dev questions")
    axes.grid(alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title, fontsize=10)
    save_figure(figure, path, dpi=120)
    return path


@dataclass
class CurveFlags:
    """Which training run to draw, on how many dev questions, and the earlier runs it continued."""

    output_dir: str = field(metadata={"help": "the training run's output folder"})
    questions: int = field(default=1000, metadata={"help": "the first N dev questions (default: 1000)"})
    start: str | None = field(default=None, metadata={
        "help": "the shipped-format folder the run started from, scored as step 0"})
    title: str = field(default="", metadata={"help": "plot title"})
    after: list[str] = field(default_factory=list, metadata={
        "repeatable": True, "metavar": "RUN",
        "help": "an earlier run this one continued (repeatable, oldest first): drawn before it"})
    first_stage: int = field(default=1, metadata={
        "help": "the stage number of the first run in the combined curve's labels (default: 1)"})


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.training.curve`."""
    parser = DataclassArgumentParser(CurveFlags, prog="python -m cpu_inference_helpers.training.curve",
                                     description=__doc__)
    (flags,) = parser.parse_dataclasses(argv)
    return parser.run(lambda: draw_curve(flags), log=TIMESTAMPED, errors=(FileNotFoundError, ValueError))


def draw_curve(flags: CurveFlags) -> int:
    """Score the run's new snapshots, chain the earlier runs before it, plot the curve and print its points."""
    output_dir = Path(flags.output_dir)
    earlier = [load_curve(Path(run)) for run in flags.after]  # before the scoring: a missing curve fails fast
    points = measure_curve(output_dir, flags.questions, Path(flags.start) if flags.start else None)
    if earlier:
        points = chain_stages([*earlier, load_curve(output_dir)], flags.first_stage)
        with atomic_file(output_dir / "curve_all_stages.json") as partial:
            partial.write_text(json.dumps({"runs": [*flags.after, str(output_dir)], "questions": flags.questions,
                                           "points": points}, indent=2) + "\n", encoding="utf-8")
    plot_curve(points, flags.questions, output_dir / "curve.png", flags.title)
    for point in points:
        stage = f"  (stage {point['stage']})" if "stage" in point else ""
        print(f"step {point['step']:>6}  EM {point['exact_match']:6.2f}  F1 {point['f1']:6.2f}{stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
