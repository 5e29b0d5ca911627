"""The one `petstream` command: a thin dispatcher to the subcommands each package registers."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Each package owns its subcommands: module.register(subparsers) adds them, each with set_defaults(func=...).
# Registering must stay cheap (no torch import) so `petstream --help` is fast.
_COMMAND_MODULES = (
    "ingest.cli",
    "ingest.security_cli",
    "simulators.cli",
    "inference.cli",
    "training.cli",
    "bench.cli",
    "fuzz.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="petstream", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
