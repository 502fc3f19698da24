"""The generation report: one Markdown table of speed per shape (ratios against eager fp32 side by side), one of
accuracy per path, the steps each path took, and flat rows for CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

from cpu_inference_helpers.generation.measure import AccuracyResult, ShapeResult
from cpu_inference_helpers.infra.tables import markdown_table


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


SPEED_HEADER = ("path", "ran as", "prompt x batch", "TTFT s", "TTFT vs eager", "decode tok/s", "decode vs eager",
                "roofline tok/s", "of roofline", "greedy = eager", "first diff", "new graphs")


def speed_table(results: Sequence[ShapeResult]) -> str:
    """Per shape and path: TTFT, decode tokens/s (summed over the batch), ratios vs eager, roofline, agreement."""
    rows = []
    for r in results:
        fraction = r.decode_tokens_per_s / r.bound_tokens_per_s if r.bound_tokens_per_s else None
        rows.append([r.path, r.ran_as, f"{r.prompt_length} x {r.batch_size}", _cell(r.ttft_s, "{:.3f}"),
                     _cell(r.ttft_vs_eager, "{:.2f}x"), _cell(r.decode_tokens_per_s, "{:.1f}"),
                     _cell(r.decode_vs_eager, "{:.2f}x"), _cell(r.bound_tokens_per_s, "{:.0f}"),
                     _cell(fraction, "{:.0%}"), _cell(r.greedy_match, "{:.0%}"),
                     "none" if r.greedy_match == 1.0 else _cell(r.first_divergence, "{}"),
                     _cell(getattr(r, "new_graphs", None), "{}")])
    return markdown_table(SPEED_HEADER, rows)


ACCURACY_HEADER = ("path", "set-up s", "model MiB", "perplexity", "ppl vs eager", "teacher-forced top-1 = eager",
                   "note")


def accuracy_table(accuracy: Sequence[AccuracyResult], setup: Mapping[str, tuple[float, float]]) -> str:
    """Per path: set-up seconds and resident MiB it added, perplexity (and its ratio to eager's), agreement."""
    base = next((a.perplexity for a in accuracy if a.perplexity is not None), None)
    rows = []
    for a in accuracy:
        seconds, megabytes = setup.get(a.path, (math.nan, math.nan))
        ratio = a.perplexity / base if a.perplexity is not None and base else None
        rows.append([a.path, _cell(seconds, "{:.1f}"), _cell(megabytes, "{:.0f}"), _cell(a.perplexity, "{:.3f}"),
                     _cell(ratio, "{:.4f}"), _cell(a.teacher_forced_agreement, "{:.1%}"), a.note or ""])
    return markdown_table(ACCURACY_HEADER, rows)


def csv_text(rows: Sequence[Mapping[str, object]]) -> str:
    """CSV of flat dict rows (the union of their keys as columns, in first-seen order)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
