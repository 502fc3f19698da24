"""Logging set-up for the command-line mains; the library itself only logs, it never configures logging.

A main states how it logs as a `LogSetup` (one of the presets below, usually) and the command-line
scaffold (`infra.cli`) applies it once, just before the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

CLI_FORMAT = "%(levelname)s %(name)s: %(message)s"
TIMESTAMPED_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class LogSetup:
    """How a command line logs: the root level, the record format, and loggers whose INFO progress it shows."""

    level: int = logging.WARNING
    fmt: str = CLI_FORMAT
    verbose_loggers: tuple[str, ...] = ()

    def configure(self) -> None:
        """Configure the root logger for a command-line run (a no-op where the user configured it already)."""
        logging.basicConfig(level=self.level, format=self.fmt)
        for name in self.verbose_loggers:
            logging.getLogger(name).setLevel(logging.INFO)


#: Warnings only: a quiet tool (python -m cpu_inference_helpers info).
QUIET = LogSetup()
#: Warnings, plus the package's INFO progress messages (run_qa, the benchmarks).
PACKAGE_PROGRESS = LogSetup(verbose_loggers=("cpu_inference_helpers",))
#: Everything from INFO up, with times: long runs such as training.
TIMESTAMPED = LogSetup(logging.INFO, TIMESTAMPED_FORMAT)
#: Everything from INFO up, the bare messages: short utilities such as `qa.data fetch`.
MESSAGES_ONLY = LogSetup(logging.INFO, "%(message)s")
