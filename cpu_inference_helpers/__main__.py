"""Command line: `python -m cpu_inference_helpers info [--json]` prints the capability report."""

from __future__ import annotations

import argparse
import json
import sys

from cpu_inference_helpers.infra.cli_logging import configure_cli_logging
from cpu_inference_helpers.techniques.capabilities import detect_capabilities


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cpu_inference_helpers`."""
    parser = argparse.ArgumentParser(prog="python -m cpu_inference_helpers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="report this CPU's inference capabilities and the installed stack")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    configure_cli_logging()
    report = detect_capabilities(include_ipex=True)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
