"""Damaged video, as real recordings and uplinks have it: a corrupted slice FFmpeg conceals (through the real
server), and damaged MP4 files, multi-track files and B-frame clips replayed through the real `petstream camera`."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import sys

import av
import pytest
from factories import cameras_with_sessions, encode_annexb, lopsided_frames, moving_square_frames, serving, write_clip

from ingest.config import ServerConfig
from simulators.camera import run_camera
from simulators.clip import ClipReader
from simulators.video import EncodedUnit

PETSTREAM = [sys.executable, "-m", "petstream.cli"]
_GRPC_CORE_LOG = re.compile(r"^[EWI]\d{4} \d\d:\d\d:\d\d|^WARNING: All log messages before absl")


@pytest.fixture(scope="module")
def tiny_server(tiny_engine):
    with serving(tiny_engine, ServerConfig(port=0)) as (address, server):
        yield address, server


def _camera(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PETSTREAM, "camera", "--target", address, "--speed", "0", "--scores", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _sent(out: subprocess.CompletedProcess) -> int:
    match = re.search(r"sent (\d+) frames", out.stdout)
    assert match, out.stdout + out.stderr
    return int(match.group(1))


def _lines(text: str) -> list[str]:
    """What the command itself printed to stderr (gRPC's C core may add its own log lines: E1201 12:00:00.1 ...)."""
    lines = [line for line in text.splitlines() if not _GRPC_CORE_LOG.match(line)]
    assert len(lines) == 1, text
    return lines


def _clip(tmp_path, name: str = "clip.mp4", n: int = 45, **kwargs: object) -> str:
    return write_clip(str(tmp_path / name), lopsided_frames(n, 160, 120), "libx264", **kwargs)  # type: ignore[arg-type]


def _packets(path: str) -> list[tuple[int, int]]:
    with av.open(path) as container:
        return [(p.pos, p.size) for p in container.demux(video=0) if p.size]


# -- the server: a corrupted slice that FFmpeg conceals ---------------------------------------------------------


def test_concealed_corrupt_picture_is_counted_warned_and_not_scored(tiny_server, caplog):
    address, server = tiny_server
    units = [EncodedUnit(d, p, k) for d, p, k in encode_annexb(moving_square_frames(30, 160, 120), gop=15)]
    damaged = bytearray(units[5].data)
    for i in range(len(damaged) // 2, len(damaged) // 2 + 12):  # inside the slice data of a P-frame
        damaged[i] ^= 0xA5
    units[5] = EncodedUnit(bytes(damaged), units[5].pts_us, units[5].key)
    caplog.set_level(logging.WARNING, logger="ingest.decoder")

    async def go():  # noqa: ANN202
        camera = run_camera(address, "corrupt-cam", units, speed=0, sample_fps=30, want_scores=True)
        return await cameras_with_sessions(server, [camera])

    (report,), sessions = asyncio.run(go())
    stats = sessions["corrupt-cam"].stats
    assert report.error is None
    assert stats.corrupt == 1 and stats.frames_decoded == 30
    codes = [w.code for w in report.warnings]
    assert codes == ["CORRUPT_DATA"], report.warnings
    assert "1 damaged picture(s)" in report.warnings[0].message
    scored = {s.pts_us for s in report.scores}
    assert scored == {u.pts_us for u in units} - {units[5].pts_us}  # every picture but the damaged one
    lines = [r.getMessage() for r in caplog.records if r.name == "ingest.decoder"]
    assert any(line.startswith("camera corrupt-cam: FFmpeg h264 decoder: ") for line in lines), lines


# -- the clip sender: damaged files --------------------------------------------------------------------------


def test_bad_length_prefix_skips_that_packet_and_replays_the_rest(tiny_server, tmp_path):
    path = _clip(tmp_path)
    pos, _ = _packets(path)[20]
    damaged = str(tmp_path / "badlen.mp4")
    shutil.copy(path, damaged)
    with open(damaged, "r+b") as f:  # the first NAL's 4-byte length prefix of packet 21 now runs past the packet
        f.seek(pos)
        f.write(b"\x7f\xff\xff\xff")
    out = _camera(tiny_server[0], "--clip", damaged)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _sent(out) == 44
    (line,) = _lines(out.stderr)
    assert "damaged recording" in line and "Invalid NAL unit size" in line and "at packet 21 (t=" in line, line
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("layout", ["faststart", "fragmented"])
def test_recording_cut_mid_write_replays_what_was_written(tiny_server, tmp_path, layout):
    flags = "faststart" if layout == "faststart" else "frag_keyframe+empty_moov"
    path = _clip(tmp_path, options={"movflags": flags})
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.mp4")
    with open(cut, "wb") as f:
        f.write(data[: int(len(data) * 0.6)])
    out = _camera(tiny_server[0], "--clip", cut)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 5 < _sent(out) < 45
    (line,) = _lines(out.stderr)
    assert "damaged recording" in line and "partial file" in line and re.search(r"packet \d+ \(t=\d+\.\d\d s\)", line)
    assert "Traceback" not in out.stderr


def test_mp4_without_its_index_is_one_line_and_fails(tiny_server, tmp_path):
    path = _clip(tmp_path)  # the index (moov) is written last, when the recording is finalised
    data = open(path, "rb").read()
    cut = str(tmp_path / "noindex.mp4")
    with open(cut, "wb") as f:
        f.write(data[: int(len(data) * 0.8)])
    out = _camera(tiny_server[0], "--clip", cut)
    assert out.returncode == 2
    (line,) = _lines(out.stderr)
    assert "moov atom not found" in line and "never written" in line, line
    assert out.stdout == ""


def test_a_file_that_is_not_video_is_one_line_and_fails(tiny_server, tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    out = _camera(tiny_server[0], "--clip", str(path))
    assert out.returncode == 2
    (line,) = _lines(out.stderr)
    assert str(path) in line and "Invalid data" in line, line


# -- the clip sender: tracks and times -----------------------------------------------------------------------


def _two_tracks(path: str) -> str:
    """A small preview track first, then the main track (marked default, as recorders do), different sizes."""
    small, big = moving_square_frames(10, 64, 48, seed=1), lopsided_frames(20, 160, 120)
    with av.open(path, "w") as container:
        preview = container.add_stream("libx264", rate=15)
        preview.width, preview.height, preview.pix_fmt = 64, 48, "yuv420p"
        main = container.add_stream("libx264", rate=15)
        main.width, main.height, main.pix_fmt = 160, 120, "yuv420p"
        main.disposition = av.stream.Disposition.default
        for i, img in enumerate(big):
            if i < len(small):
                for p in preview.encode(av.VideoFrame.from_ndarray(small[i], format="rgb24")):
                    container.mux(p)
            for p in main.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(p)
        for stream in (preview, main):
            for p in stream.encode(None):
                container.mux(p)
    return path


def test_the_main_video_track_is_replayed_unless_another_is_chosen(tiny_server, tmp_path):
    path = _two_tracks(str(tmp_path / "two.mp4"))
    best = _camera(tiny_server[0], "--clip", path)
    assert best.returncode == 0, best.stdout + best.stderr
    assert "video track 1 of 2 (h264 160x120" in best.stdout and _sent(best) == 20
    first = _camera(tiny_server[0], "--clip", path, "--video-track", "0")
    assert first.returncode == 0 and "video track 0 of 2 (h264 64x48" in first.stdout and _sent(first) == 10
    missing = _camera(tiny_server[0], "--clip", path, "--video-track", "2")
    assert missing.returncode == 2 and missing.stderr.strip().endswith("there is no video track 2; it has 2 (0..1)")


def test_b_frame_clip_sends_presentation_times_and_the_server_reports_them_in_order(tiny_server, tmp_path):
    """Chunks of a B-frame clip go in decode order: their presentation times step back where a B-frame follows
    the P-frame it precedes on screen (as the protocol says); decode times rise; the server's times rise."""
    path = _clip(tmp_path, n=30)
    reader = ClipReader(path)
    units = list(reader.units())
    pts = [u.pts_us for u in units]
    assert pts != sorted(pts), "libx264's default encoding has B-frames"
    dts = [u.dts_us for u in units]
    assert all(d is not None for d in dts) and dts == sorted(dts) and len(set(dts)) == len(dts)
    assert all(d <= p for d, p in zip(dts, pts, strict=True))  # nothing is shown before it is decoded
    assert len(set(pts)) == 30 and reader.damage == []
    report = asyncio.run(run_camera(tiny_server[0], "bframes", units, speed=0, sample_fps=15, want_scores=True))
    assert report.error is None and report.warnings == []
    assert [s.pts_us for s in report.scores] == sorted(pts)  # every frame, in presentation order, on its own time
