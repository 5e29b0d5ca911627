"""Defects found under load and hostile input (issue 14), each through a real server: streams of one device kept
apart, memory bounded whatever a chunk holds, a refused open's reason intact, idle streams ended, limits exact."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import grpc
import numpy as np
import pytest
from factories import FakeEngine, cameras_with_sessions, running_server, serving

from ingest.config import ServerConfig
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import run_camera
from simulators.video import EncodedUnit
from streaming.batcher import BatchPolicy

OPEN_H264 = pb.CameraMessage(open=pb.StreamOpen(device_id="cam", codec=pb.CODEC_H264))


def smooth_units(seconds: float, *, width: int = 640, height: int = 360, fps: int = 15, gop: int = 30) -> list:
    """A cheap-to-make H.264 stream: a gradient with a moving square (fast to encode, realistic picture sizes)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate, ctx.gop_size, ctx.max_b_frames = Fraction(1, 1_000_000), Fraction(fps), gop, 0
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": f"keyint={gop}:scenecut=0"}
    base = np.broadcast_to(np.linspace(0, 200, width, dtype=np.uint8)[None, :, None], (height, width, 3)).copy()
    units = []
    for i in range(round(seconds * fps)):
        img = base.copy()
        x = (i * 7) % (width - 40)
        img[height // 3 : height // 3 + 40, x : x + 40] = (255, 40, 40)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = round(i * 1e6 / fps), ctx.time_base
        units += [EncodedUnit(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in ctx.encode(frame)]
    units += [EncodedUnit(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in ctx.encode(None)]
    return units


async def _stream(address: str, messages, *, timeout: float = 30.0) -> tuple[list[pb.ServerMessage], object]:
    """Send `messages` (an iterable or async iterable) on one raw stream; (replies, AioRpcError or None)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.BehaviorStreamStub(channel).Stream(messages, timeout=timeout)
        got = []
        try:
            async for m in call:
                got.append(m)
        except grpc.aio.AioRpcError as exc:
            return got, exc
        return got, None


# -- 1. streams of one device are independent -----------------------------------------------------------------


def test_three_streams_of_one_device_each_end_promptly_with_all_scores():
    """A camera that reconnects before its old stream is declared dead: both streams live at once (late binding
    on, a slow model so frames wait and get refreshed). Each ends soon after its camera half-closes."""
    units = smooth_units(4, width=160, height=96)
    # three live streams of one device allowed (by default a newer one replaces the older: test_hostile_input)
    config = ServerConfig(port=0, batch=BatchPolicy(max_batch=2, max_wait_ms=20), max_streams_per_device=3)
    with serving(FakeEngine(delay_s=0.15), config) as (address, server):

        async def camera(i: int):  # noqa: ANN202
            start = time.monotonic()
            report = await asyncio.wait_for(
                run_camera(address, "same-device", units, speed=2.0, want_scores=True, sample_fps=4.0), timeout=40
            )
            return report, time.monotonic() - start

        async def scenario():  # noqa: ANN202
            return await cameras_with_sessions(server, [camera(i) for i in range(3)], key=lambda s: s.session_id)

        results, sessions = asyncio.run(scenario())
    assert len(sessions) == 3, "three streams, three sessions"
    video_s = (units[-1].pts_us - units[0].pts_us) / 1e6 / 2.0
    for report, elapsed in results:
        assert report.error is None, report.error
        assert report.scores, "every stream gets its own scores"
        print(f"stream of a shared device id ended {elapsed - video_s:.2f} s after its video")
        assert elapsed < video_s + 10, f"stream ended {elapsed - video_s:.1f} s after its video"
    for s in sessions.values():
        st = s.stats
        assert st.frames_scored <= st.frames_sampled
        assert st.frames_sampled == st.frames_scored + sum(st.dropped.values())
    assert sum(len(r.scores) for r, _ in results) == sum(s.stats.frames_scored for s in sessions.values())


# -- 2. memory is bounded whatever one chunk holds ------------------------------------------------------------


def _vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


PICTURE_GROWTH_BOUND_MB = 64  # decoder references + a few sampled pictures; 100 s of 640x360 decoded is ~520 MB


@pytest.mark.parametrize("policy", [pb.DROP_OLDEST, pb.WAIT], ids=["live", "replay"])
def test_one_chunk_holding_100_s_of_video_keeps_server_memory_bounded(tmp_path, policy):
    from bench.load import session_stats_from_log
    from simulators.fleet import server_subprocess

    units = smooth_units(100)
    blob = b"".join(u.data for u in units)
    assert len(blob) < 8 << 20
    log_path = str(tmp_path / "server.log")
    with server_subprocess(["--model", "tiny"], log_path=log_path) as (address, proc):
        warm = asyncio.run(run_camera(address, "warm", smooth_units(3), speed=0, want_scores=True))
        assert warm.error is None and warm.scores
        with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        before_kb = _vm_kb(proc.pid, "VmHWM")
        chunk = pb.CameraMessage(chunk=pb.VideoChunk(data=blob, seq=1, pts_us=units[0].pts_us or 1))
        opening = pb.CameraMessage(
            open=pb.StreamOpen(device_id="big", codec=pb.CODEC_H264, want_scores=True, buffer_policy=policy)
        )
        got, err = asyncio.run(_stream(address, [opening, chunk], timeout=120))
        peak_kb = _vm_kb(proc.pid, "VmHWM")
    assert err is None, err
    growth_mb = (peak_kb - before_kb) / 1024
    print(f"server peak RSS growth for one 100 s chunk: {growth_mb:.1f} MB")
    assert growth_mb < PICTURE_GROWTH_BOUND_MB
    stats = session_stats_from_log(log_path)["big"]
    assert stats["frames_decoded"] == len(units)
    scored = sum(m.WhichOneof("kind") == "scores" for m in got)
    dropped = sum(stats.get("dropped", {}).values())  # type: ignore[union-attr]
    assert stats["frames_sampled"] == scored + dropped, "every sampled frame is scored or counted as dropped"
    assert scored == stats["frames_scored"]
    if policy == pb.WAIT:
        assert dropped == 0 and scored == 100, "a replay is slowed down, never dropped: one frame per second of video"


# -- 3. a refused open keeps its reason for a camera that keeps writing ---------------------------------------


def _writing_camera(first: pb.CameraMessage, chunks: int = 200, size: int = 64 << 10):  # noqa: ANN202
    """Firmware-like: writes its chunks right after `open`, without waiting for the server's answer."""

    async def messages():  # noqa: ANN202
        yield first
        for i in range(chunks):
            yield pb.CameraMessage(chunk=pb.VideoChunk(data=b"\0" * size, seq=i + 1))

    return messages()


BAD_OPENS = [
    (pb.CameraMessage(open=pb.StreamOpen(device_id="cam", codec=42)), "open.codec"),
    (
        pb.CameraMessage(
            open=pb.StreamOpen(
                device_id="cam", codec=pb.CODEC_H264, behaviors=[pb.Behavior(name=f"b{i}") for i in range(2000)]
            )
        ),
        "behaviors: 2000 given",
    ),
    (
        pb.CameraMessage(
            open=pb.StreamOpen(
                device_id="cam", codec=pb.CODEC_H264, behaviors=[pb.Behavior(name="x", question="why " * 25_000)]
            )
        ),
        "longer than 200 characters",
    ),
]


def test_refused_open_reaches_a_camera_that_keeps_writing_20_times_in_a_row():
    with running_server(FakeEngine()) as address:

        async def attempts():  # noqa: ANN202
            out = []
            for i in range(20):
                first, needle = BAD_OPENS[i % len(BAD_OPENS)]
                _, err = await _stream(address, _writing_camera(first))
                out.append((err, needle))
            return out

        for err, needle in asyncio.run(attempts()):
            assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            assert needle in err.details()


# -- 4. idle streams end; the stream cap ----------------------------------------------------------------------


def test_a_stream_that_sends_no_chunk_ends_with_a_status_naming_the_idle_timeout():
    async def open_then_wait():  # noqa: ANN202
        yield OPEN_H264
        await asyncio.sleep(30)  # holds the stream open, sends nothing (keepalive pings are not chunks)

    with running_server(FakeEngine(), idle_timeout_s=1.0) as address:
        start = time.monotonic()
        got, err = asyncio.run(_stream(address, open_then_wait(), timeout=20))
        elapsed = time.monotonic() - start
    assert got and got[0].WhichOneof("kind") == "accepted"
    assert err is not None and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "idle_timeout_s=1" in err.details()
    assert elapsed < 10, "ended by the server's idle timeout, not by the client's deadline"


def test_a_camera_that_sends_chunks_is_not_idle():
    units = smooth_units(3, width=96, height=64)
    with running_server(FakeEngine(), idle_timeout_s=0.5) as address:
        report = asyncio.run(run_camera(address, "paced", units, speed=1.0, want_scores=True))
    assert report.error is None and report.scores


def test_streams_beyond_max_streams_are_refused_naming_the_limit():
    async def held():  # noqa: ANN202
        yield OPEN_H264
        await asyncio.sleep(30)

    with running_server(FakeEngine(), max_streams=2, max_streams_per_device=3) as address:  # one device id for all

        async def scenario():  # noqa: ANN202
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.BehaviorStreamStub(channel)
                calls = [stub.Stream(held()) for _ in range(2)]
                for call in calls:
                    assert (await call.read()).WhichOneof("kind") == "accepted"
                _, err = await _stream(address, _writing_camera(OPEN_H264, chunks=20))
                for call in calls:
                    call.cancel()
                await asyncio.sleep(0.3)  # the cancelled streams leave the server
                got, after = await _stream(address, [OPEN_H264])
                return err, got, after

        err, got, after = asyncio.run(scenario())
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams=2" in err.details()
    assert after is None and got[0].WhichOneof("kind") == "accepted", "room again once streams leave"


# -- 5. the documented chunk limit is the enforced one --------------------------------------------------------


def test_a_chunk_of_exactly_max_chunk_bytes_is_accepted_and_one_byte_more_is_refused_naming_the_limit():
    limit = ServerConfig().max_chunk_bytes
    assert limit == 8 << 20
    with running_server(FakeEngine()) as address:
        exact = [OPEN_H264, pb.CameraMessage(chunk=pb.VideoChunk(data=b"\0" * limit, seq=1))]
        got, err = asyncio.run(_stream(address, exact))
        assert err is None, err
        assert got[0].WhichOneof("kind") == "accepted"
        over = _writing_camera(OPEN_H264, chunks=3, size=limit + 1)
        _, err = asyncio.run(_stream(address, over))
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"max_chunk_bytes={limit}" in err.details()


# -- 6. the governor follows the configured batch wait ---------------------------------------------------------


def test_a_long_max_wait_on_an_idle_server_is_not_overload():
    units = smooth_units(8, width=96, height=64)
    config = ServerConfig(port=0, batch=BatchPolicy(max_batch=8, max_wait_ms=1000))
    with serving(FakeEngine(), config) as (address, _):

        async def three():  # noqa: ANN202
            return await asyncio.gather(
                *(run_camera(address, f"cam-{i}", units, speed=1.0, sample_fps=2.0) for i in range(3))
            )

        reports = asyncio.run(three())
    for r in reports:
        assert r.error is None
        assert not [w for w in r.warnings if w.code == "RATE_REDUCED"], [w.message for w in r.warnings]
