"""The CI fuzz run: every atheris target for a few seconds on the corpus the seeds make; nothing may be found."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fuzz.seeds import write_corpus
from fuzz.targets import TARGETS

SECONDS = 2  # per target: seconds, not minutes (`petstream fuzz --seconds N` runs long ones)


def test_seed_corpus_holds_valid_truncated_and_bit_flipped_inputs(tmp_path) -> None:
    for name, target in TARGETS.items():
        n = write_corpus(str(tmp_path / name), name)
        assert n >= 4
        for seed in (tmp_path / name).iterdir():
            target(seed.read_bytes())  # every seed passes its target as a plain function call


@pytest.mark.slow
def test_short_fuzz_run_of_every_target_finds_nothing(tmp_path) -> None:
    out = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [sys.executable, "-m", "petstream.cli", "fuzz", "--seconds", str(SECONDS), "--corpus", str(tmp_path / "c")]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60 * len(TARGETS),
    )
    results = {r["target"]: r for r in json.loads(out.read_text())}
    assert set(results) == set(TARGETS)
    for name, r in results.items():
        assert r["ok"] and not r["findings"], (name, r["tail"])
        assert r["executions"] > 100, (name, r)  # it really ran
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
