"""Comma-separated lists on command lines ("eager,jit", "384x1, 128x8"): one way to split them."""

from __future__ import annotations


def comma_list(text: str) -> list[str]:
    """The non-empty items of `text` split at commas, stripped ("a, b,,c " -> ["a", "b", "c"])."""
    return [item.strip() for item in text.split(",") if item.strip()]
