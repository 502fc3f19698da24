"""How an exception is told in one line: its type and the first line of its message."""

from __future__ import annotations


def error_summary(error: BaseException, max_chars: int | None = None) -> str:
    """"TypeName: first line of the message" ("TypeName" alone when the message is empty), at most `max_chars`."""
    text = str(error).strip()
    summary = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    return summary if max_chars is None else summary[:max_chars]
