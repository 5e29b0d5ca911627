"""`petstream fuzz`: run every fuzz target (or some) for N seconds each on a seeded corpus; registered by fuzz/."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COV = re.compile(r"cov: (\d+)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuzz",
        help="coverage-guided fuzzing (atheris) of chunk decoding, message and image parsing",
        description="Coverage-guided fuzzing (atheris/libFuzzer) of the code that reads what cameras send: chunk "
        "decoding, message and image parsing.",
        epilog="example:\n  petstream fuzz --seconds 30 --json fuzz.json",
    )
    p.add_argument("--seconds", type=float, default=60.0, metavar="S", help="how long each target runs (default: 60)")
    p.add_argument(
        "--target", action="append", default=[], metavar="NAME", help="a target to run; repeat (default: all)"
    )
    p.add_argument(
        "--corpus",
        metavar="PATH",
        help="folder keeping one corpus per target across runs; seeded when empty (default: a temporary folder)",
    )
    p.add_argument(
        "--rss-limit-mb", type=int, default=2048, metavar="MB", help="a target using more memory fails (default: 2048)"
    )
    p.add_argument("--json", metavar="PATH", help="write per-target results here (default: none)")
    p.set_defaults(func=_fuzz)


def run_target(name: str, corpus: Path, seconds: float, rss_limit_mb: int, findings: Path) -> dict[str, object]:
    """One target under libFuzzer; a crash, hang (10 s per input) or memory blow-up is a finding."""
    from fuzz.seeds import write_corpus

    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        write_corpus(str(corpus), name)
    findings.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "fuzz.run",
        name,
        f"-max_total_time={max(1, round(seconds))}",
        f"-rss_limit_mb={rss_limit_mb}",
        "-timeout=10",
        "-max_len=65536",
        f"-artifact_prefix={findings}/{name}-",
        "-print_final_stats=1",
        str(corpus),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    done = _DONE.search(proc.stderr)
    cov = _COV.findall(proc.stderr)
    return {
        "target": name,
        "ok": proc.returncode == 0 and done is not None,
        "returncode": proc.returncode,
        "executions": int(done.group(1)) if done else 0,
        "seconds": int(done.group(2)) if done else None,
        "coverage": int(cov[-1]) if cov else None,
        "corpus_files": sum(1 for _ in corpus.iterdir()),
        "findings": sorted(str(f) for f in findings.glob(f"{name}-*")),
        "tail": "" if proc.returncode == 0 else proc.stderr[-3000:],
    }


def _fuzz(args: argparse.Namespace) -> int:
    from fuzz.targets import TARGETS

    names = args.target or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        print(f"petstream fuzz: unknown target(s) {unknown}; allowed: {sorted(TARGETS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="petstream-fuzz-") as tmp:
        root = Path(args.corpus or tmp)
        results = []
        for name in names:
            r = run_target(name, root / name, args.seconds, args.rss_limit_mb, root / "findings")
            results.append(r)
            status = "ok" if r["ok"] else f"FAILED (exit {r['returncode']}): {r['findings']}"
            print(f"{name:<16} {r['executions']:>9} executions  coverage {r['coverage']}  {status}", flush=True)
            if not r["ok"]:
                print(r["tail"], file=sys.stderr)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["ok"] for r in results) else 1
