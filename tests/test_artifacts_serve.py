"""compile → save → load → serve on the CPU: a server with compiled artifacts scores like the eager path."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from factories import encode_annexb, moving_square_frames, running_server

from inference.engine import load_engine
from simulators.camera import run_camera
from simulators.fleet import server_process
from simulators.video import EncodedUnit
from streaming.batcher import BatchPolicy


def _compile_tiny(out: object, *args: str) -> subprocess.CompletedProcess[str]:
    """`petstream compile` of the tiny model in fp32 into `out`, as a user runs it."""
    cmd = [sys.executable, "-m", "petstream.cli", "compile", "--model", "tiny", "--dtype", "fp32", *args]
    return subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=300)


def _scores(address: str, units: list[EncodedUnit]) -> dict[int, dict[str, float]]:
    report = asyncio.run(run_camera(address, "cam", iter(units), speed=0, want_scores=True, sample_fps=5))
    assert report.error is None and not report.warnings
    return {s.frame_seq: dict(s.p_yes) for s in report.scores}


def test_compiled_artifacts_served_give_the_same_frame_scores(tmp_path):
    out = tmp_path / "artifacts"
    done = _compile_tiny(out, "--backend", "cpu", "--batch-sizes", "1,2,4")
    assert done.returncode == 0, done.stderr
    assert (out / "manifest.json").exists()
    units = [EncodedUnit(d, p, k) for d, p, k in encode_annexb(moving_square_frames(45, seed=4))]

    with running_server(load_engine("tiny", dtype="fp32")) as address:
        eager = _scores(address, units)
    compiled_engine = load_engine("tiny", dtype="fp32", artifacts=str(out), batch_sizes=(1, 2, 4))
    with running_server(compiled_engine, batch=BatchPolicy(max_batch=4)) as address:
        compiled = _scores(address, units)

    assert eager.keys() == compiled.keys() and len(eager) == 15
    diff = max(abs(eager[k][q] - compiled[k][q]) for k in eager for q in eager[k])
    assert diff <= 1e-5, diff


def test_serve_refuses_mismatched_artifacts_with_a_clear_message(tmp_path):
    out = tmp_path / "artifacts"
    done = _compile_tiny(out, "--batch-sizes", "1")
    assert done.returncode == 0, done.stderr
    log = tmp_path / "server.log"
    try:
        with server_process(
            ["--model", "tiny", "--dtype", "bf16", "--artifacts", str(out)], log_path=str(log), timeout_s=120
        ):
            raise AssertionError("server started with mismatched artifacts")
    except RuntimeError as exc:
        assert "did not start" in str(exc)
    assert "dtype: artifacts have 'fp32', engine has 'bf16'" in log.read_text()
