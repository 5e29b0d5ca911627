"""Drain and restart: SIGTERM drains (NOT_SERVING, no new streams, frames in flight answered, UNAVAILABLE with a
reason and a resume point), cameras come back by themselves, open episodes continue across the restart, and a
camera that stays away gets its episodes ended."""

from __future__ import annotations

import asyncio
import tempfile

import grpc
from factories import FakeEngine, blink_units
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.restart import free_port, run
from ingest.config import ServerConfig
from ingest.server import DRAIN_REASON, PetstreamServer
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import Backoff, run_camera
from simulators.subscriber import watch_events
from streaming.events import EventRule

RULE = EventRule(start_k=2, start_n=3, end_m=2)
BARKING = [("barking", "")]
QUICK = Backoff(initial_s=0.1, max_s=0.5)


def key(e: pb.BehaviorEvent) -> str:
    return f"{e.event_id}/{pb.EventState.Name(e.state)}"


async def _health(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
        return reply.status


async def _open_one(address: str) -> grpc.aio.AioRpcError | None:
    open_ = pb.CameraMessage(open=pb.StreamOpen(device_id="late", codec=pb.CODEC_H264))
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            async for _ in pb_grpc.BehaviorStreamStub(channel).Stream(iter([open_])):
                pass
        except grpc.aio.AioRpcError as exc:
            return exc
    return None


def test_an_episode_open_at_a_restart_keeps_its_id_and_ends_after_it_and_the_camera_comes_back_by_itself():
    data_dir = tempfile.mkdtemp(prefix="petstream-restart-")
    config = ServerConfig(port=free_port(), data_dir=data_dir, events=RULE)
    address = f"127.0.0.1:{config.port}"
    units = blink_units(10, on_s=6, off_s=4)  # one episode: red 0-6 s of video, then black

    async def scenario():  # noqa: ANN202
        first = PetstreamServer(FakeEngine(), config)
        await first.start()
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_events(address, stop=stop, reconnect=QUICK))
        camera = asyncio.create_task(
            run_camera(address, "cam", units, speed=2, sample_fps=4, behaviors=BARKING, reconnect=QUICK)
        )
        await asyncio.sleep(1.5)  # 3 s of video: mid-episode
        drain = asyncio.create_task(first.drain())
        await asyncio.sleep(0.05)
        during = (await _health(address, ""), await _health(address, "petstream.v1.BehaviorStream"))
        refused = await _open_one(address)
        summary = await drain
        await first.stop()
        await asyncio.sleep(0.5)  # the outage
        second = PetstreamServer(FakeEngine(), config)
        await second.start()
        report = await camera
        await asyncio.sleep(0.5)
        stop.set()
        watched = await watcher
        await second.stop()
        return during, refused, summary, report, watched

    during, refused, summary, report, watched = asyncio.run(scenario())
    assert during == (health_pb2.HealthCheckResponse.NOT_SERVING,) * 2
    assert refused is not None and refused.code() == grpc.StatusCode.UNAVAILABLE and "restarting" in refused.details()
    assert summary["streams"] == 1 and summary["streams_forced"] == 0, summary
    assert report.error is None and report.connections >= 2, (report.error, report.stream_errors)
    assert report.stream_errors[0] == f"UNAVAILABLE: {DRAIN_REASON}", "the camera was told why, intact"
    assert [pb.EventState.Name(e.state) for e in report.events] == ["STARTED", "ENDED"], report.events
    started, ended = report.events
    assert ended.event_id == started.event_id and ended.start_pts_us == started.start_pts_us
    assert 5_000_000 < ended.pts_us <= 7_500_000, "ended where the video turned black, after the restart"
    assert watched.keys() == [key(started), key(ended)], "the subscriber, across the restart: each event once"
    sessions = [r.session_id for r in watched.records]
    assert sessions[0] != sessions[1], "STARTED before the restart, ENDED by the camera's next stream"
    assert report.units_skipped == 0, "the camera resent from the server's resume point: no video skipped"


def test_a_camera_that_stays_away_gets_its_open_episode_ended_by_the_server():
    config = ServerConfig(port=free_port(), data_dir=tempfile.mkdtemp(prefix="petstream-away-"), events=RULE)
    config = ServerConfig(**{**config.__dict__, "episode_resume_s": 1.0})
    address = f"127.0.0.1:{config.port}"

    async def scenario():  # noqa: ANN202
        server = PetstreamServer(FakeEngine(), config)
        await server.start()
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_events(address, stop=stop))
        units = blink_units(20, on_s=20, off_s=1)  # red throughout: an episode that never ends on its own
        camera = asyncio.create_task(run_camera(address, "cam", units, speed=1, sample_fps=4, behaviors=BARKING))
        while not any(r.event.state == "STARTED" for r in await _records(server)):
            await asyncio.sleep(0.1)
        camera.cancel()  # the camera vanishes: no half-close, no status
        await asyncio.gather(camera, return_exceptions=True)
        for _ in range(50):
            if len(await _records(server)) >= 2:
                break
            await asyncio.sleep(0.1)
        stop.set()
        watched = await watcher
        await server.stop()
        return watched

    watched = asyncio.run(scenario())
    states = [pb.EventState.Name(r.event.state) for r in watched.records]
    assert states == ["STARTED", "ENDED"], states
    started, ended = watched.records
    assert ended.event.event_id == started.event.event_id
    assert ended.session_id == "" and started.session_id, "ended by the server, not by a camera stream"


async def _records(server: PetstreamServer) -> list:
    return await server.store.query(None, limit=100)


def test_sigterm_restart_while_sim_tiny_cameras_stream_delivers_every_event_once_with_no_split_episode():
    """The done-when scenario, small (the 20-camera run is `petstream bench restart`, figures in the README)."""
    result = run(cameras=3, seconds=40, speed=2, restart_at_s=None, baseline=False, print_fn=lambda *_: None)
    r = result["restart"]
    print({k: v for k, v in r.items() if k not in ("per_behavior", "subscriber_stream_errors")})
    assert r["restart"]["exit_code"] == 0 and r["final_exit_code"] == 0
    assert r["cameras_failed"] == [] and r["cameras_reconnected"] == 3, "every camera came back by itself"
    assert r["camera_first_stream_errors"] == [f"UNAVAILABLE: {DRAIN_REASON}"]
    assert r["duplicates"] == 0 and r["unpaired"] == 0, "each episode: one STARTED, one ENDED, each delivered once"
    assert r["camera_events_not_delivered"] == 0 and r["events_delivered"] == r["stored_events"]
    assert r["split_truth_episodes"] == 0
    assert r["matched_truth"] == r["truth_episodes"] >= 6, "every scripted episode reported"
    assert r["matched_predicted"] == r["predicted"], "and nothing that was not scripted"
