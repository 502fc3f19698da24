"""The benchmark's reports: the summary against the best path and the roofline, text and Markdown tables, a plot."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from ..tables import text_table
from .paths import REFERENCE
from .profiling import Profile
from .roofline import MatmulPeak
from .runner import PathResult, best_pytorch_paths

AUTO_TOLERANCE = 1.10  # the auto choice must be within 10% of the best PyTorch path
INT8_OVER_BF16_TARGET = 1.3  # int8 earns its accuracy cost only when clearly faster than bf16


def summarise(results: Sequence[PathResult]) -> list[str]:
    """Per shape: the best PyTorch paths per precision, the peers, and how `auto` compares."""
    lines = []
    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    for seq_len, batch_size in shapes:
        rows = [r for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size) and not r.skipped]
        timed = {r.path: r for r in rows}
        lines.append(f"seq {seq_len}, batch {batch_size}:")
        bests = best_pytorch_paths(rows)
        for precision, best in bests.items():
            text = (f"  best {precision} PyTorch path: {best.path} {best.speedup_vs_eager_fp32:.2f}x eager fp32, "
                    f"{best.roofline_fraction:.0%} of the {precision} matmul roofline")
            peer = timed.get("openvino" if precision == "fp32" else f"openvino:{precision}")
            if peer:
                text += f"; OpenVINO {precision} is {best.median_ms / peer.median_ms:.2f}x as fast as it"
            lines.append(text)
            if best.profile:
                lines.append(f"    profile: {Profile(**best.profile).summary()}")
            auto = timed.get("auto" if precision == "fp32" else f"auto:{precision}")
            if auto:
                ratio = auto.median_ms / best.median_ms
                verdict = "within" if ratio <= AUTO_TOLERANCE else "NOT within"
                lines.append(f"  auto ({auto.ran_as}) takes {ratio:.2f}x the best {precision} time: "
                             f"{verdict} {AUTO_TOLERANCE - 1:.0%}")
        if "int8" in bests and "bf16" in bests:
            ratio = bests["bf16"].median_ms / bests["int8"].median_ms
            lines.append(f"  best int8 ({bests['int8'].path}) runs {ratio:.2f}x the best bf16 ({bests['bf16'].path}): "
                         f"{'at least' if ratio >= INT8_OVER_BF16_TARGET else 'below'} the "
                         f"{INT8_OVER_BF16_TARGET:.1f}x target")
    return lines


COLUMNS = [("path", "{}"), ("ran as", "{}"), ("ms", "{:.1f}"), ("p90 ms", "{:.1f}"), ("vs eager", "{:.2f}x"),
           ("GFLOP/s", "{:.0f}"), ("roofline", "{:.0%}"), ("setup s", "{:.1f}"), ("max |dlogit|", "{:.2g}")]


def format_table(results: Sequence[PathResult]) -> str:
    """A text table per shape, skipped paths listed with the reason."""
    blocks = []
    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    for seq_len, batch_size in shapes:
        rows = [r for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size)]
        values = [(r.path, r.ran_as, r.median_ms, r.p90_ms, r.speedup_vs_eager_fp32, r.achieved_gflops,
                   r.roofline_fraction, r.setup_s, r.max_logit_diff_vs_eager) for r in rows if not r.skipped]
        lines = [f"seq {seq_len}, batch {batch_size}", *text_table(COLUMNS, values)]
        lines += [f"skipped {r.path}: {r.skipped}" for r in rows if r.skipped]
        lines += [f"fallback in {r.path}: {reason}" for r in rows for reason in r.fallbacks]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_markdown(results: Sequence[PathResult]) -> str:
    """Speed-up over eager fp32 (and share of the roofline) per path and shape, as a Markdown table."""
    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    paths = list(dict.fromkeys(r.path for r in results))
    by_key = {(r.path, r.seq_len, r.batch_size): r for r in results}
    header = "| path | " + " | ".join(f"seq {s}, batch {b}" for s, b in shapes) + " |"
    lines = [header, "|" + " --- |" * (len(shapes) + 1)]
    for path in paths:
        cells = []
        for seq_len, batch_size in shapes:
            r = by_key.get((path, seq_len, batch_size))
            if r is None or r.skipped:
                cells.append("skipped")
            else:
                cell = f"{r.median_ms:.0f} ms, {r.speedup_vs_eager_fp32:.2f}x ({r.roofline_fraction:.0%})"
                cells.append(cell + (" fell back" if r.fallbacks else ""))
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: Path, results: Sequence[PathResult], peaks: dict[str, MatmulPeak], title: str) -> None:
    """One panel per shape: speed-up over eager fp32 per path, with the fp32 and bf16 roofline marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    columns = min(2, len(shapes))
    grid_rows = -(-len(shapes) // columns)
    figure, axes = plt.subplots(grid_rows, columns, figsize=(7.5 * columns, 6 * grid_rows), squeeze=False)
    for axis in axes.flat[len(shapes):]:
        axis.set_visible(False)
    for axis, (seq_len, batch_size) in zip(axes.flat, shapes, strict=False):
        rows = [r for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size) and not r.skipped]
        axis.set_title(f"seq {seq_len}, batch {batch_size}", fontsize=10)
        reference = next((r for r in rows if r.path == REFERENCE), None)
        if reference is None:  # the shape's process died, or eager was not timed: say so instead of plotting
            why = next((r.skipped for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size)), "")
            axis.text(0.5, 0.5, "\n".join(textwrap.wrap(f"not measured: {why}", 50)), ha="center", va="center",
                      fontsize=8, transform=axis.transAxes)
            axis.set_axis_off()
            continue
        colors = ["#9e9e9e" if r.fallbacks else "#7570b3" if r.family == "peer" else
                  "#d95f02" if r.precision == "bf16" else "#1b9e77" for r in rows]
        bars = axis.barh([r.path for r in rows], [r.speedup_vs_eager_fp32 for r in rows], color=colors)
        for bar, r in zip(bars, rows, strict=True):
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                      f" {r.speedup_vs_eager_fp32:.2f}x ({r.roofline_fraction:.0%})", va="center", fontsize=7)
        for precision, style in (("fp32", "--"), ("bf16", ":"), ("int8", "-.")):
            limit = peaks[precision].gflops / reference.achieved_gflops  # eager's time / the roofline time
            axis.axvline(limit, color="black", linestyle=style, linewidth=1, label=f"{precision} roofline")
        axis.set_xlabel("speed-up vs eager fp32 (label: share of its precision's roofline)")
        axis.set_xlim(0, max(peaks["int8"].gflops / reference.achieved_gflops,
                             max(r.speedup_vs_eager_fp32 for r in rows)) * 1.15)
        axis.invert_yaxis()
        axis.legend(fontsize=8, loc="upper right")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
