"""Smoke test of `petstream bench scaleout --quick` (figures mean nothing; the JSON's shape and its invariants do):
1 and 2 worker processes, the Ray tier beside the local engine, and the pinned mode's pinning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinned mode needs two cores")
def test_bench_scaleout_quick_writes_every_figure(tmp_path: Path) -> None:
    if not os.environ.get("CI"):
        pytest.importorskip("ray")
    out = tmp_path / "scaleout.json"
    cmd = [sys.executable, "-m", "petstream.cli", "bench", "scaleout", "--quick", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    s = r["summary"]
    assert s["ingest_streams_1_worker"] > 0 and s["ingest_streams_2_workers"] > 0
    assert s["ray_max_abs_p_yes_diff"] <= 1e-5  # the same engine behind a handle answers the same
    assert set(s["ray_overhead_ms_per_frame"]) == {"1", "8"}
    assert 0 < s["pinned_ingest_vs_decode_limit"] < 2
    pinned = r["pinned"]["ingest"]
    ingest, model = pinned["cores"]["ingest"], pinned["cores"]["model"]
    affinity = pinned["thread_affinity"]
    assert affinity["main"] == [str(ingest)] and affinity["ps-decode"] == [str(ingest)]
    assert affinity["ps-model"] == [str(model)]
    assert all(not x["errors"] for runs in r["workers"]["raw"].values() for x in runs)
