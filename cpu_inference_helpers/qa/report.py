"""Presenting a comparison: a text table, JSON and CSV files, and a matplotlib chart."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cpu_inference_helpers.infra.plotting import pyplot, save_figure
from cpu_inference_helpers.infra.tables import Table
from cpu_inference_helpers.qa.comparison import ModeResult

COLUMNS = [
    ("mode", "{}"),
    ("ran as", "{}"),
    ("EM", "{:.2f}"),
    ("F1", "{:.2f}"),
    ("samples/s", "{:.2f}"),
    ("speedup", "{:.2f}x"),
    ("mean ms/batch", "{:.1f}"),
    ("p90 ms/batch", "{:.1f}"),
    ("setup s", "{:.2f}"),
    ("break-even", "{}"),
    ("same answers", "{:.1%}"),
    ("dEM", "{:+.2f}"),
    ("dF1", "{}"),
    ("max |dlogit|", "{:.2g}"),
]


def _break_even_text(samples: float) -> str:
    if math.isinf(samples):
        return "never"
    return f"{math.ceil(samples)} samples"


def _change_text(change: float, half_width: float) -> str:
    if math.isinf(half_width):
        return f"{change:+.2f}"
    return f"{change:+.2f}±{half_width:.2f}"


def _row(result: ModeResult) -> list[Any]:
    return [
        result.name,
        result.ran_as,
        result.exact_match,
        result.f1,
        result.samples_per_second,
        result.speedup_vs_eager,
        1000 * result.mean_batch_latency_s,
        1000 * result.p90_batch_latency_s,
        result.setup_s,
        _break_even_text(result.break_even_samples),
        result.same_answers_as_eager,
        result.exact_match_change_vs_eager,
        _change_text(result.f1_change_vs_eager, result.f1_change_95ci),
        result.max_logit_diff_vs_eager,
    ]


def comparison_table(results: Sequence[ModeResult]) -> Table:
    """One row per mode, followed by the fallbacks that happened: text when printed, HTML in Jupyter."""
    notes = [f"fallback in {result.name}: {reason}" for result in results for reason in result.fallbacks]
    return Table(COLUMNS, [_row(result) for result in results], notes=notes)


def format_table(results: Sequence[ModeResult]) -> str:
    """A fixed-width text table, one row per mode, followed by the fallbacks that happened."""
    return str(comparison_table(results))


def write_json(path: Path, results: Sequence[ModeResult], metadata: Mapping[str, Any]) -> None:
    """All results with per-batch latencies, and the run's metadata (machine, versions, arguments)."""
    payload = {"metadata": dict(metadata), "results": [r.as_dict() for r in results]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def write_csv(path: Path, results: Sequence[ModeResult]) -> None:
    """One row per mode with the table's numbers at full precision."""
    fields = [name for name in results[0].as_dict() if name != "batch_latencies_s"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for result in results:
            row = result.as_dict()
            row.pop("batch_latencies_s")
            row["fallbacks"] = " | ".join(row["fallbacks"])
            writer.writerow(row)


#: Bar colours by the precision a mode ran in (the benchmark's colours), and for modes that fell back.
PRECISION_COLORS = {"fp32": "#1b9e77", "bf32": "#66a61e", "bf16": "#d95f02", "int8": "#e7298a"}
FELL_BACK_COLOR = "#9e9e9e"


def plot_results(path: Path, results: Sequence[ModeResult], title: str) -> bool:
    """Throughput per mode (with speed-up labels) and per-batch latency over the run (drift).

    Returns False (logged) when matplotlib is not installed: no plot then.
    """
    plt = pyplot(path.name)
    if plt is None:
        return False

    figure, (bars_axis, drift_axis) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[1, 1.2])
    names = [r.name for r in results]
    throughput = [r.samples_per_second for r in results]
    colors = [FELL_BACK_COLOR if r.fallbacks else PRECISION_COLORS.get(r.precision, PRECISION_COLORS["fp32"])
              for r in results]
    bars = bars_axis.barh(names, throughput, color=colors)
    for bar, result in zip(bars, results, strict=True):
        label = f" {result.speedup_vs_eager:.2f}x" + (" (fell back)" if result.fallbacks else "")
        bars_axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=9)
    bars_axis.invert_yaxis()
    bars_axis.set_xlabel("samples/s (higher is better)")
    bars_axis.set_xlim(0, max(throughput) * 1.3)
    bars_axis.set_title("Throughput, speed-up vs eager fp32")
    for result in results:
        drift_axis.plot([1000 * s for s in result.batch_latencies_s], label=result.name, linewidth=1.2)
    drift_axis.set_xlabel("batch (modes interleaved)")
    drift_axis.set_ylabel("ms per batch")
    drift_axis.set_ylim(bottom=0)
    drift_axis.set_title("Per-batch latency over the run")
    drift_axis.legend(fontsize=8, loc="upper right")
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)
    return True
