"""Runs one fuzz target under atheris/libFuzzer: `python -m fuzz.run TARGET [libFuzzer flags] [CORPUS_DIR]`."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["ingest", "fuzz", "PIL"]):  # Python coverage of our parsers guides the fuzzer
    from fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: python -m fuzz.run TARGET [libFuzzer flags]; TARGET one of {sorted(TARGETS)}")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
