"""Installed package versions, read from the distributions' metadata without importing them."""

from __future__ import annotations

from importlib import metadata


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution ("transformers", "intel-extension-for-pytorch"), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
