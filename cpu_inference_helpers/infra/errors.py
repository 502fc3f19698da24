"""How an exception is told in one line (its type and the first line of its message), and how settings
that check themselves say everything that is wrong at once."""

from __future__ import annotations

from collections.abc import Iterable


def error_summary(error: BaseException, max_chars: int | None = None) -> str:
    """"TypeName: first line of the message" ("TypeName" alone when the message is empty), at most `max_chars`."""
    text = str(error).strip()
    summary = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    return summary if max_chars is None else summary[:max_chars]


def failed_checks(checks: Iterable[tuple[bool, str]]) -> list[str]:
    """The messages of the (failed, message) checks that failed, in order."""
    return [message for failed, message in checks if failed]


def refuse_failed_checks(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise one ValueError naming every failed (failed, message) check, "; "-joined; nothing when all pass."""
    problems = failed_checks(checks)
    if problems:
        raise ValueError("; ".join(problems))
