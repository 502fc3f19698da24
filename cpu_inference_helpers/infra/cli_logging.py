"""Logging set-up for the command-line mains; the library itself only logs, it never configures logging."""

from __future__ import annotations

import logging

CLI_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_cli_logging(level: int = logging.WARNING, fmt: str = CLI_FORMAT,
                          verbose_loggers: tuple[str, ...] = ()) -> None:
    """Configure the root logger for a command-line run (a no-op where the user configured it already).

    Args:
        level: the root level, e.g. logging.WARNING for a quiet CLI.
        fmt: the record format.
        verbose_loggers: logger names whose INFO progress messages the CLI shows.
    """
    logging.basicConfig(level=level, format=fmt)
    for name in verbose_loggers:
        logging.getLogger(name).setLevel(logging.INFO)
