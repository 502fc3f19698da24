"""Command line: `python -m cpu_inference_helpers info [--json]` prints the capability report."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from cpu_inference_helpers.infra.cli import DataclassArgumentParser
from cpu_inference_helpers.techniques.capabilities import detect_capabilities


@dataclass
class InfoFlags:
    """How `info` prints the capability report."""

    json: bool = field(default=False, metadata={"help": "print the report as JSON"})


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers`."""
    parser = DataclassArgumentParser(prog="python -m cpu_inference_helpers", description=__doc__)
    parser.add_command("info", InfoFlags, help_text="report this CPU's inference capabilities and the installed stack")
    (flags,) = parser.parse_dataclasses(argv)
    return parser.run(lambda: print_capabilities(flags), errors=())


def print_capabilities(flags: InfoFlags) -> int:
    """Print the capability report, as text or as JSON."""
    report = detect_capabilities(include_ipex=True)
    print(json.dumps(report.as_dict(), indent=2) if flags.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
