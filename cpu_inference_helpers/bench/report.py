"""The benchmark's reports: the summary against the best path and the roofline, text and Markdown tables, a plot."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from cpu_inference_helpers.bench.paths import REFERENCE
from cpu_inference_helpers.bench.profiling import Profile
from cpu_inference_helpers.bench.roofline import MatmulPeak
from cpu_inference_helpers.bench.runner import BF16_BESIDE_INT8, PathResult, best_pytorch_paths
from cpu_inference_helpers.infra.plotting import pyplot, save_figure
from cpu_inference_helpers.infra.tables import markdown_table, text_table

AUTO_TOLERANCE = 1.05  # the auto choice must be within 5% of the best PyTorch path
INT8_OVER_BF16_TARGET = 1.3  # int8 earns its accuracy cost only when clearly faster than bf16


def summarise(results: Sequence[PathResult], bf16_and_int8_apart: bool = False) -> list[str]:
    """Per shape: the best PyTorch paths per precision, the peers, and how `auto` compares.

    `bf16_and_int8_apart`: the host's bf16 and int8 rooflines moved apart during the run
    (`roofline.bf16_and_int8_moved_apart`); the int8-against-bf16 line then gives its ratio without a verdict.
    """
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
            lines.append(_int8_against_bf16(bests["int8"], bests["bf16"], timed.get(BF16_BESIDE_INT8),
                                            bf16_and_int8_apart))
    return lines


def _int8_against_bf16(int8: PathResult, bf16: PathResult, bf16_beside_int8: PathResult | None,
                       host_moved_them_apart: bool) -> str:
    """The summary line comparing the best int8 path with the best bf16 path: timed side by side where the int8
    group timed that bf16 path too, else by their speed-ups over each group's own eager; no verdict on the target
    where the host's bf16 and int8 speeds moved apart during the run."""
    if bf16_beside_int8 is not None:
        ratio, how = bf16_beside_int8.median_ms / int8.median_ms, "timed side by side"
    else:
        ratio, how = int8.speedup_vs_eager_fp32 / bf16.speedup_vs_eager_fp32, "speed-ups over each group's eager"
    line = f"  best int8 ({int8.path}) runs {ratio:.2f}x the best bf16 ({bf16.path}; {how}): "
    if host_moved_them_apart:
        return line + (f"the {INT8_OVER_BF16_TARGET:.1f}x target NOT DECIDED, the host's bf16 and int8 speeds "
                       "moved apart during the run (below)")
    verdict = "at least" if ratio >= INT8_OVER_BF16_TARGET else "below"
    return line + f"{verdict} the {INT8_OVER_BF16_TARGET:.1f}x target"


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
        lines += [f"choice in {r.path}: {choice}" for r in rows for choice in r.choices]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_markdown(results: Sequence[PathResult]) -> str:
    """Speed-up over eager fp32 (and share of the roofline) per path and shape, as a Markdown table."""
    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    paths = list(dict.fromkeys(r.path for r in results))
    by_key = {(r.path, r.seq_len, r.batch_size): r for r in results}
    rows = []
    for path in paths:
        cells = []
        for seq_len, batch_size in shapes:
            r = by_key.get((path, seq_len, batch_size))
            if r is None or r.skipped:
                cells.append("skipped")
            else:
                cell = f"{r.median_ms:.0f} ms, {r.speedup_vs_eager_fp32:.2f}x ({r.roofline_fraction:.0%})"
                cells.append(cell + (" fell back" if r.fallbacks else ""))
        rows.append([path, *cells])
    return markdown_table(["path", *(f"seq {s}, batch {b}" for s, b in shapes)], rows, text_columns=1)


#: Bar colours: PyTorch paths by precision, peers, and paths that fell back.
BAR_COLORS = {"fp32": "#1b9e77", "bf32": "#66a61e", "bf16": "#d95f02", "int8": "#e7298a", "peer": "#7570b3",
              "fell back": "#9e9e9e"}


def _bar_color(result: PathResult) -> str:
    if result.fallbacks:
        return BAR_COLORS["fell back"]
    return BAR_COLORS["peer"] if result.family == "peer" else BAR_COLORS.get(result.precision, BAR_COLORS["fp32"])


def _eager_gflops(rows: Sequence[PathResult]) -> float:
    """Eager fp32's throughput at this shape, from any timed row: each keeps its own group's eager median.

    The eager row itself may be missing (its group's process died) while other groups' rows are there.
    """
    eager = next((r for r in rows if r.path == REFERENCE), None)
    if eager is not None:
        return eager.achieved_gflops
    return rows[0].achieved_gflops * rows[0].median_ms / rows[0].eager_ms


def plot(
    path: Path, results: Sequence[PathResult], peaks: dict[str, MatmulPeak], title: str,
) -> dict[tuple[int, int], list[str]]:
    """One panel per shape: speed-up over eager fp32 per path, coloured by precision, with the rooflines marked.

    Returns the paths drawn per (sequence length, batch size); nothing (logged) without matplotlib.
    """
    plt = pyplot(path.name)
    if plt is None:
        return {}
    from matplotlib.patches import Patch

    shapes = sorted({(r.seq_len, r.batch_size) for r in results}, key=lambda s: (-s[0], s[1]))
    columns = min(2, len(shapes))
    grid_rows = -(-len(shapes) // columns)
    figure, axes = plt.subplots(grid_rows, columns, figsize=(7.5 * columns, 6 * grid_rows), squeeze=False)
    for axis in axes.flat[len(shapes):]:
        axis.set_visible(False)
    drawn: dict[tuple[int, int], list[str]] = {}
    for axis, (seq_len, batch_size) in zip(axes.flat, shapes, strict=False):
        rows = [r for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size) and not r.skipped]
        drawn[seq_len, batch_size] = [r.path for r in rows]
        axis.set_title(f"seq {seq_len}, batch {batch_size}", fontsize=10)
        if not rows:  # the shape's processes died: say so instead of plotting
            why = next((r.skipped for r in results if (r.seq_len, r.batch_size) == (seq_len, batch_size)), "")
            axis.text(0.5, 0.5, "\n".join(textwrap.wrap(f"not measured: {why}", 50)), ha="center", va="center",
                      fontsize=8, transform=axis.transAxes)
            axis.set_axis_off()
            continue
        bars = axis.barh([r.path for r in rows], [r.speedup_vs_eager_fp32 for r in rows],
                         color=[_bar_color(r) for r in rows])
        for bar, r in zip(bars, rows, strict=True):
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                      f" {r.speedup_vs_eager_fp32:.2f}x ({r.roofline_fraction:.0%})", va="center", fontsize=7)
        eager_gflops = _eager_gflops(rows)
        for precision, style in (("fp32", "--"), ("bf16", ":"), ("int8", "-.")):
            limit = peaks[precision].gflops / eager_gflops  # eager's time / the roofline time
            axis.axvline(limit, color="black", linestyle=style, linewidth=1, label=f"{precision} roofline")
        axis.set_xlabel("speed-up vs eager fp32 (label: share of its precision's roofline)")
        axis.set_xlim(0, max(peaks["int8"].gflops / eager_gflops,
                             max(r.speedup_vs_eager_fp32 for r in rows)) * 1.15)
        axis.invert_yaxis()
        colours = [Patch(color=BAR_COLORS[key], label=key) for key in BAR_COLORS
                   if any(_bar_color(r) == BAR_COLORS[key] for r in rows)]
        axis.legend(handles=axis.get_legend_handles_labels()[0] + colours, fontsize=8, loc="upper right")
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)
    return drawn
