"""Integration: a real grpc.aio server on a free port with the real tiny BLIP, real H.264 from PyAV."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pytest
from factories import FakeEngine, encode_annexb, moving_square_frames, running_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import run_camera
from simulators.video import EncodedUnit


def _units(n: int = 45, seed: int = 0, fps: int = 15) -> list[EncodedUnit]:
    return [EncodedUnit(d, p, k) for d, p, k in encode_annexb(moving_square_frames(n, seed=seed), fps=fps)]


async def _raw_stream(address: str, messages: list[pb.CameraMessage]) -> tuple[list[pb.ServerMessage], object]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.BehaviorStreamStub(channel)
        got = []
        try:
            async for m in stub.Stream(iter(messages)):
                got.append(m)
        except grpc.aio.AioRpcError as exc:
            return got, exc
        return got, None


@pytest.mark.parametrize(
    "first,needle",
    [
        (pb.CameraMessage(chunk=pb.VideoChunk(data=b"\x00\x00\x00\x01")), "first message of a stream must be 'open'"),
        (pb.CameraMessage(open=pb.StreamOpen(device_id="", codec=pb.CODEC_H264)), "device_id is empty"),
        (pb.CameraMessage(open=pb.StreamOpen(device_id="cam", codec=pb.CODEC_UNSPECIFIED)), "codec"),
        (pb.CameraMessage(open=pb.StreamOpen(device_id="cam", codec=42)), "allowed"),
        (pb.CameraMessage(open=pb.StreamOpen(device_id="cam", codec=pb.CODEC_H264, sample_fps=-1)), "sample_fps"),
    ],
)
def test_bad_open_is_invalid_argument_naming_the_problem(first, needle):
    with running_server(FakeEngine()) as address:
        got, err = asyncio.run(_raw_stream(address, [first]))
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in err.details()
        # the server is still serving afterwards
        got, err = asyncio.run(
            _raw_stream(address, [pb.CameraMessage(open=pb.StreamOpen(device_id="ok", codec=pb.CODEC_H264))])
        )
        assert err is None and got[0].WhichOneof("kind") == "accepted"


def test_empty_stream_is_invalid_argument():
    with running_server(FakeEngine()) as address:
        _, err = asyncio.run(_raw_stream(address, []))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty stream" in err.details()


def test_tiny_blip_scores_every_sampled_frame(tiny_engine):
    with running_server(tiny_engine) as address:
        report = asyncio.run(run_camera(address, "cam-1", iter(_units(45)), speed=0, want_scores=True, sample_fps=2.0))
    assert report.error is None and report.accepted.model == tiny_engine.model_name
    assert [b.name for b in report.accepted.behaviors] == ["barking", "playing", "chewing_furniture"]
    # 45 frames at 15 fps = 3 s of video; 2 frames/s sampled
    assert len(report.scores) == 6
    for s in report.scores:
        assert set(s.p_yes) == {"barking", "playing", "chewing_furniture"}
        assert all(0.0 <= v <= 1.0 for v in s.p_yes.values())
    assert [s.pts_us for s in report.scores] == sorted(s.pts_us for s in report.scores)


def test_random_bytes_camera_gets_warning_while_other_camera_keeps_scoring(tiny_engine):
    rng = np.random.default_rng(7)
    junk = [EncodedUnit(rng.integers(1, 256, 20_000, dtype=np.uint8).tobytes(), 0, False) for _ in range(20)]

    async def both(address):
        return await asyncio.gather(
            run_camera(address, "noise", iter(junk), speed=0),
            run_camera(address, "good", iter(_units(60)), speed=0, want_scores=True),
        )

    with running_server(tiny_engine, max_frame_bytes=100_000) as address:
        noise, good = asyncio.run(both(address))
        assert noise.error is None and {w.code for w in noise.warnings} >= {"NOT_ANNEXB", "OVERSIZED_FRAME"}
        assert good.error is None and len(good.scores) == 4 and not good.warnings
        # and the server still takes new cameras
        again = asyncio.run(run_camera(address, "again", iter(_units(15)), speed=0, want_scores=True))
        assert len(again.scores) == 1


def test_corrupt_middle_of_stream_warns_and_recovers_at_keyframe():
    units = _units(60)
    junk = bytearray(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    for pos in (0, 1500):
        junk[pos : pos + 5] = b"\x00\x00\x00\x01\x65"
    stream = units[:12] + [EncodedUnit(bytes(junk), 0, False)] + units[12:]
    with running_server(FakeEngine()) as address:
        report = asyncio.run(run_camera(address, "cam", iter(stream), speed=0, want_scores=True, sample_fps=15))
    assert any(w.code == "DECODE_ERROR" for w in report.warnings)
    assert report.scores[-1].pts_us == units[-1].pts_us  # decoding resumed and reached the end


def test_behavior_update_mid_stream_changes_questions():
    units = _units(60)

    def messages():
        yield pb.CameraMessage(
            open=pb.StreamOpen(
                device_id="cam", codec=pb.CODEC_H264, want_scores=True, sample_fps=5, buffer_policy=pb.WAIT
            )
        )
        for i, u in enumerate(units):
            if i == 30:
                yield pb.CameraMessage(
                    update=pb.BehaviorUpdate(behaviors=[pb.Behavior(name="sleeping", question="is the dog sleeping?")])
                )
            yield pb.CameraMessage(chunk=pb.VideoChunk(data=u.data, seq=i, pts_us=u.pts_us))

    with running_server(FakeEngine()) as address:
        got, err = asyncio.run(_raw_stream(address, list(messages())))
    assert err is None
    keys = [set(m.scores.p_yes) for m in got if m.WhichOneof("kind") == "scores"]
    assert keys[0] == {"barking", "playing", "chewing_furniture"} and keys[-1] == {"sleeping"}
    assert sum(m.WhichOneof("kind") == "accepted" for m in got) == 2


def test_ask_answers_for_a_jpeg_and_rejects_garbage(tiny_engine):
    buf = io.BytesIO()
    Image.fromarray(moving_square_frames(1)[0]).save(buf, format="JPEG")

    async def ask(address, image):
        async with grpc.aio.insecure_channel(address) as ch:
            return await pb_grpc.BehaviorStreamStub(ch).Ask(
                pb.AskRequest(
                    image=image,
                    behaviors=[pb.Behavior(name="sofa", question="is there a sofa?"), pb.Behavior(name="barking")],
                )
            )

    with running_server(tiny_engine) as address:
        resp = asyncio.run(ask(address, buf.getvalue()))
        assert set(resp.p_yes) == {"sofa", "barking"} and resp.model == tiny_engine.model_name
        with pytest.raises(grpc.aio.AioRpcError) as info:
            asyncio.run(ask(address, b"definitely not an image"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "JPEG or PNG" in info.value.details()


def test_health_and_reflection():
    async def check(address):
        async with grpc.aio.insecure_channel(address) as ch:
            h = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="petstream.v1.BehaviorStream")
            )
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            responses = [
                r
                async for r in stub.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                )
            ]
            return h.status, [s.name for s in responses[0].list_services_response.service]

    with running_server(FakeEngine()) as address:
        status, services = asyncio.run(check(address))
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert "petstream.v1.BehaviorStream" in services and "grpc.health.v1.Health" in services


def test_engine_failure_warns_camera_and_server_survives():
    with running_server(FakeEngine(fail=True)) as address:
        report = asyncio.run(run_camera(address, "cam", iter(_units(30)), speed=0, want_scores=True))
    assert report.error is None and any(w.code == "MODEL_ERROR" for w in report.warnings)
    assert not report.scores
