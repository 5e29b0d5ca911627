"""End to end: the `petstream` CLI as subprocesses — serve, camera --clip, and the demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from factories import moving_square_frames, write_clip

from simulators.fleet import server_process

PETSTREAM = [sys.executable, "-m", "petstream.cli"]


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    log = str(tmp_path_factory.mktemp("server") / "server.log")
    with server_process(["--model", "tiny", "--dtype", "fp32"], log_path=log) as address:
        yield address


@pytest.mark.parametrize("suffix,codec", [("mp4", "libx264"), ("webm", "libvpx-vp9"), ("mkv", "libx265")])
def test_recorded_clip_streams_through_camera_clip_and_gets_scores(tiny_server, tmp_path, suffix, codec):
    clip = write_clip(str(tmp_path / f"clip.{suffix}"), moving_square_frames(45, 192, 108), codec, fps=15)
    out = subprocess.run(
        [
            *PETSTREAM,
            "camera",
            "--target",
            tiny_server,
            "--clip",
            clip,
            "--scores",
            "--speed",
            "0",
            "--device-id",
            f"clip-{suffix}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    scores = [line for line in out.stdout.splitlines() if " scores " in line]
    assert len(scores) == 3, out.stdout  # 3 s of video at the default 1 frame/s
    assert all(re.search(r"barking=\d\.\d\d", line) for line in scores)
    assert "WARNING" not in out.stdout


def test_camera_against_missing_server_fails_clearly(tmp_path):
    clip = write_clip(str(tmp_path / "c.mp4"), moving_square_frames(5), "libx264")
    out = subprocess.run(
        [*PETSTREAM, "camera", "--target", "127.0.0.1:1", "--clip", clip, "--speed", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "UNAVAILABLE" in out.stdout


def test_demo_prints_events_from_three_cameras():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = subprocess.run(
        [*PETSTREAM, "demo", "--seconds", "60", "--speed", "4", "--width", "320", "--height", "180"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    events = [line for line in out.stdout.splitlines() if re.search(r" (STARTED|ENDED) ", line)]
    assert {line.split()[0] for line in events} == {"cam-1", "cam-2", "cam-3"}, out.stdout
    assert "events vs the cameras' scripts" in out.stdout
    assert "runs WITHOUT TLS" in out.stdout
