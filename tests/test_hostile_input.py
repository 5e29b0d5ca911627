"""Broken and hostile input through a real server: each case gets a clear warning or a status naming the limit,
and the server goes on serving a good camera afterwards with nothing left behind."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
from factories import FakeEngine, moving_square_frames, serving, write_clip

from fuzz.seeds import annexb, bomb_png, h264_sps
from ingest.config import ServerConfig
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import CameraReport, run_camera
from simulators.video import EncodedUnit, WireCodec


def units_of(chunks: list[bytes], fps: int = 15) -> list[EncodedUnit]:
    return [EncodedUnit(c, round(i * 1e6 / fps) + 1, False) for i, c in enumerate(chunks)]


def _camera(address: str, device: str, chunks: list[bytes], codec: WireCodec = "h264", **kw) -> CameraReport:
    return asyncio.run(run_camera(address, device, units_of(chunks), codec=codec, speed=0, want_scores=True, **kw))


def _codes(report: CameraReport) -> set[str]:
    return {w.code for w in report.warnings}


def _broken_corpus(tmp_path) -> dict[str, tuple[WireCodec, list[bytes]]]:
    h264, hevc, jpegs = annexb("h264", 30, gop=10), annexb("hevc", 20, gop=10), annexb("mjpeg", 6)
    mp4 = write_clip(str(tmp_path / "clip.mp4"), moving_square_frames(30), "libx264")
    raw = open(mp4, "rb").read()
    truncated_mp4 = raw[: len(raw) // 2]  # the index (moov) is written last: cut, there is none
    corrupt = [bytearray(u) for u in h264]
    rng = np.random.default_rng(5)
    corrupt[10][6:200] = rng.integers(0, 256, len(corrupt[10][6:200]), dtype=np.uint8).tobytes()  # an IDR slice
    return {
        "truncated mp4 without its index": (
            "h264",
            [truncated_mp4[i : i + 4096] for i in range(0, len(raw) // 2, 4096)],
        ),
        "stream cut mid-NAL": ("h264", [*h264[:12], h264[12][: len(h264[12]) // 2]]),
        "corrupted H.264 slice": ("h264", [bytes(u) for u in corrupt]),
        "HEVC declared as H.264": ("h264", hevc),
        "MJPEG with a truncated JPEG": ("mjpeg", [*jpegs[:3], jpegs[3][: len(jpegs[3]) // 2], *jpegs[4:]]),
        "0-byte chunks": ("h264", [b""] * 50 + h264[:10]),
        "an 8 MiB chunk of noise": ("h264", [rng.integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()]),
    }


# what each broken input is answered with: a warning code (stream ends OK) or, for the last ones, a status
EXPECTED_WARNINGS = {
    "truncated mp4 without its index": {"NOT_ANNEXB"},
    "stream cut mid-NAL": set(),  # the frames before the cut are scored, the partial one is reported if it fails
    "corrupted H.264 slice": set(),  # FFmpeg conceals what it can; decoding goes on
    "HEVC declared as H.264": {"DECODE_ERROR"},
    "MJPEG with a truncated JPEG": set(),
    "0-byte chunks": set(),  # an empty chunk is legal and counted, and costs nothing
    "an 8 MiB chunk of noise": {"NOT_ANNEXB", "OVERSIZED_FRAME"},
}


def test_broken_input_corpus_gets_warnings_and_never_takes_the_server_down(tmp_path) -> None:
    corpus = _broken_corpus(tmp_path)
    with serving(FakeEngine(), ServerConfig(port=0, max_frame_bytes=1 << 20)) as (address, server):
        for name, (codec, chunks) in corpus.items():
            report = _camera(address, name.replace(" ", "-")[:40], chunks, codec)
            assert report.error is None, (name, report.error)  # a warning, not a crash or a hang
            assert EXPECTED_WARNINGS[name] <= _codes(report), (name, _codes(report))
        good = _camera(address, "good", annexb("h264", 30, gop=10))
        assert good.error is None and len(good.scores) == 2 and not good.warnings
        assert server.service.sessions == {} and server.service.devices.streams("good") == []


def test_a_16384_sps_ends_the_stream_naming_max_decoded_pixels() -> None:
    units = annexb("h264", 6, gop=10)
    with serving(FakeEngine(), ServerConfig(port=0)) as (address, _):
        report = _camera(address, "huge", [h264_sps(16384, 16384) + units[0], *units[1:]])
    assert report.error.startswith("INVALID_ARGUMENT") and "max_decoded_pixels=8.2944e+06" in report.error
    assert "16384x16384" in report.error and not report.scores


def test_a_chunk_flood_ends_the_stream_naming_max_chunks_per_s() -> None:
    with serving(FakeEngine(), ServerConfig(port=0, max_chunks_per_s=200)) as (address, _):
        report = _camera(address, "flood", [b"\x00\x00\x01\x09\xf0"] * 3000)
    assert report.error is not None and report.error.startswith("RESOURCE_EXHAUSTED"), report.error
    assert "max_chunks_per_s=200" in report.error


def test_a_bitrate_over_the_limit_ends_the_stream_naming_max_bitrate_bps() -> None:
    cfg = ServerConfig(port=0, max_bitrate_bps=200_000, max_chunk_bytes=32_768, max_chunks_per_s=0)
    with serving(FakeEngine(), cfg) as (address, _):
        report = _camera(address, "fat", [b"\x00\x00\x01\x09" + bytes(20_000)] * 100)
    assert report.error.startswith("RESOURCE_EXHAUSTED") and "max_bitrate_bps=200000" in report.error


def test_a_second_stream_of_a_device_replaces_the_first_which_is_told_why() -> None:
    units = [EncodedUnit(d, p, k) for d, p, k in _h264_units(8.0)]

    async def both(address: str) -> tuple[CameraReport, CameraReport]:
        first = asyncio.create_task(run_camera(address, "cam-x", units, speed=1.0, want_scores=True))
        await asyncio.sleep(1.5)
        second = await run_camera(address, "cam-x", units[:30], speed=0, want_scores=True)
        return await first, second

    with serving(FakeEngine(), ServerConfig(port=0)) as (address, server):
        first, second = asyncio.run(both(address))
        deadline = time.monotonic() + 5  # the replaced stream's session is released by its handler, a moment later
        while server.service.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.service.sessions == {}
    assert first.error.startswith("ABORTED") and "replaced by a newer stream of device 'cam-x'" in first.error
    assert "max_streams_per_device=1" in first.error
    assert second.error is None and len(second.scores) == 2


def _h264_units(seconds: float) -> list[tuple[bytes, int, bool]]:
    from factories import encode_annexb

    return encode_annexb(moving_square_frames(round(seconds * 15)), fps=15, gop=15)


def test_ask_with_a_decompression_bomb_png_is_refused_naming_the_limit() -> None:
    async def ask(address: str) -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.BehaviorStreamStub(ch).Ask(pb.AskRequest(image=bomb_png(10_000, 10_000)))
            return info.value

    with serving(FakeEngine(), ServerConfig(port=0)) as (address, _):
        err = asyncio.run(ask(address))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_decoded_pixels" in err.details() and "10000x10000" in err.details()


def test_outbox_of_a_camera_that_does_not_read_is_bounded_and_drops_are_counted() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ingest import wire
    from ingest.session import Session
    from streaming.batcher import Batcher, BatchPolicy
    from streaming.events import EventRule
    from streaming.frames import Event

    pool = ThreadPoolExecutor(1)
    spec = wire.parse_open(
        pb.CameraMessage(open=pb.StreamOpen(device_id="c", codec=pb.CODEC_H264)), default_fps=1, max_fps=30
    )
    session = Session(
        spec,
        "s1",
        batcher=Batcher(FakeEngine().run, BatchPolicy(), pool),
        decode_executor=pool,
        image_size=32,
        rules=lambda _: EventRule(),
        max_frame_bytes=1 << 20,
        max_outbox=4,
    )
    for i in range(10):
        session.warn("DECODE_ERROR", f"bad {i}")
    assert session.outbox.qsize() == 4 and session.stats.outbox_dropped == {"warning": 6}
    session.send(wire.event_message(Event("c", "barking", "STARTED", 0.9, 1, 1, "e1", 1)))
    assert session.outbox.qsize() == 5  # events are never dropped
    pool.shutdown()
