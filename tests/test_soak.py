"""`petstream soak` end to end (short): cameras churn against a server process; its figures come back as JSON and a
PNG, and file descriptors, threads and asyncio tasks are back at their baseline once the cameras left."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_a_short_soak_writes_its_samples_and_every_resource_comes_back(tmp_path):
    out = tmp_path / "soak.json"
    cmd = [sys.executable, "-m", "petstream.cli", "soak", "--cameras", "3", "--minutes", "0.25", "--sample-s", "1",
           "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert os.path.getsize(tmp_path / "soak.png") > 10_000
    checks = result["checks"]
    assert checks["fds_back_to_baseline"] and checks["threads_back_to_baseline"], checks
    assert checks["tasks_back_to_baseline"] and checks["no_stream_left"], checks
    assert checks["rss_growth_lt_5pct"] is None, "too short to judge memory growth: not claimed"
    churn = result["churn"]
    assert churn["connects"] >= 3 and churn["error_count"] == 0, churn
    phases = {s["phase"] for s in result["samples"]}
    assert {"warm-up", "baseline", "churn", "settle"} <= phases
    assert result["peak_streams"] >= 2
    assert all(s["rss_bytes"] > 0 and s["open_fds"] > 0 and s["threads"] > 0 for s in result["samples"])
