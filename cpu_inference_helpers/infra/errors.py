"""How an exception is told in one line (its type and the first line of its message), and how settings
that check themselves say everything that is wrong at once."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The first line of every error a TorchScript graph raises while it runs; the cause is on its last line.
TORCHSCRIPT_INTERPRETER_FAILED = "The following operation failed in the TorchScript interpreter."
_FAILED_OPERATOR = re.compile(r"=\s*([A-Za-z_]\w*::\w+)\(")


def error_summary(error: BaseException, max_chars: int | None = None) -> str:
    """"TypeName: first line of the message" ("TypeName" alone when the message is empty), at most `max_chars`.

    An error raised inside a TorchScript graph, whose first line only says that an operation failed, is told
    by the graph operator that raised it and its last line, the underlying error (e.g. "RuntimeError: a
    TorchScript graph failed in ipex::mha_scores_calc: RuntimeError: could not create a primitive descriptor
    for the matmul primitive. ...").
    """
    text = str(error).strip()
    lines = text.splitlines()
    if len(lines) > 1 and lines[0].strip() == TORCHSCRIPT_INTERPRETER_FAILED:
        # "The following operation failed ..." says nothing: name the graph's operator and the error it raised
        operators = [match.group(1) for line in lines if (match := _FAILED_OPERATOR.search(line))]
        where = f" in {operators[-1]}" if operators else ""
        return _clipped(f"{type(error).__name__}: a TorchScript graph failed{where}: {lines[-1].strip()}", max_chars)
    summary = f"{type(error).__name__}: {lines[0]}" if text else type(error).__name__
    return _clipped(summary, max_chars)


def _clipped(text: str, max_chars: int | None) -> str:
    return text if max_chars is None else text[:max_chars]


def failed_checks(checks: Iterable[tuple[bool, str]]) -> list[str]:
    """The messages of the (failed, message) checks that failed, in order."""
    return [message for failed, message in checks if failed]


def refuse_failed_checks(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise one ValueError naming every failed (failed, message) check, "; "-joined; nothing when all pass."""
    problems = failed_checks(checks)
    if problems:
        raise ValueError("; ".join(problems))
