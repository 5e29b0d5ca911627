"""The one `petstream` command: each package registers its own subcommands here."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from petstream.logs import configure as configure_logging
from petstream.progress import enabled as progress_enabled

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

DESCRIPTION = """\
petstream watches pet cameras with a BLIP vision-language model: cameras stream video over gRPC, the server
decodes it, looks at a few frames per second, asks yes/no questions ("is the dog barking?") and streams behavior
events back to each camera."""

EPILOG = """\
examples:
  petstream serve --model sim-tiny --port 50051      # the server
  petstream camera --target 127.0.0.1:50051          # one synthetic camera against it
  petstream camera --clip phone.mp4 --speed 0        # replay a recording as fast as the server takes it
  petstream demo                                     # a server and three cameras, events printed

`petstream COMMAND --help` explains each command."""


class HelpFormatter(argparse.HelpFormatter):
    """Text written in lines (examples) keeps them, a one-line description is wrapped; every option's help ends
    with its default, where it has one.

    Options whose default is None or False (unset flags, switches) say in their own words what leaving them out
    does, so "(default: None)" never shows."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "%(default)" in text
            or "default:" in text
            or not action.option_strings
            or action.default is None
            or action.default is False
            or action.default == []
            or action.default == argparse.SUPPRESS
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands inherit the help formatter (add_subparsers uses this class)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        """A usage mistake is one line (the usage block is one --help away)."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def version() -> str:
    try:
        return metadata.version("petstream")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="petstream", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"petstream {version()}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="what is logged to stderr"
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line with structured fields (default: text)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)  # `serve --log-format` sets the same attribute
    if not progress_enabled():  # transformers' own bars ("Loading weights") follow the same rule as ours
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # A path the user gave: one line, not a traceback.
        text = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        print(f"petstream {args.command}: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
