"""The NATS JetStream sink against a real nats-server: every stored event published once (read back from the stream),
and a broker killed for 10 s while events flow loses none (the sink waits in the store and replays from its cursor).

nats-server is Debian's package; `.ci/run` installs it. The tests skip only where it cannot be had."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import unquote

import pytest
from factories import FakeEngine, blink_units, serving

from bench.restart import free_port
from ingest.config import ServerConfig
from simulators.camera import run_camera
from streaming.events import EventRule
from streaming.frames import Event
from streaming.nats_sink import DEFAULT_STREAM, subject, subject_token
from streaming.store import StoredEvent

nats = pytest.importorskip("nats", reason="nats-py is not installed (pip install -e '.[nats]')")
RULE = EventRule(start_k=2, start_n=3, end_m=2)
BARKING = [("barking", "")]


class Broker:
    """A nats-server with JetStream on a fixed port and store folder, so a restart comes back the same."""

    def __init__(self) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.skip("nats-server is not installed (apt-get install nats-server; .ci/run does it)")
        self.binary = binary
        self.port = free_port()
        self.store_dir = tempfile.mkdtemp(prefix="petstream-nats-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [self.binary, "-js", "-sd", self.store_dir, "-a", "127.0.0.1", "-p", str(self.port)]
        log = open(os.path.join(self.store_dir, "nats.log"), "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no goodbye to its clients
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.store_dir, ignore_errors=True)


@pytest.fixture
def broker():  # noqa: ANN201
    b = Broker()
    b.start()
    yield b
    b.close()


async def _read_stream(url: str) -> list[dict]:
    """Every message JetStream holds, by sequence, as (subject, headers, payload)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(DEFAULT_STREAM)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(DEFAULT_STREAM, seq)
            out.append(
                {"subject": msg.subject, "msg_id": (msg.headers or {}).get("Nats-Msg-Id"), **json.loads(msg.data)}
            )
        return out
    finally:
        await nc.close()


async def _wait_caught_up(server: object, timeout_s: float) -> None:
    pump = server.sinks[0]  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    while (pump.lag or not pump.connected) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def _on_server_loop(server: object, coro):  # noqa: ANN001, ANN202
    return asyncio.run_coroutine_threadsafe(coro, server.store._loop).result(60)  # type: ignore[attr-defined]


def test_subject_tokens_are_safe_and_reversible():
    record = StoredEvent(7, Event("furbo.42 *>", "chewing furniture", "ENDED", 0.8, 1, 2, "x", 0, 1), "s", 3)
    assert subject("petstream.events", record) == "petstream.events.furbo%2E42%20%2A%3E.chewing%20furniture.ended"
    assert unquote(subject_token("café.é")) == "café.é" and subject_token("cam-1_a") == "cam-1_a"


def test_every_stored_event_reaches_jetstream_once_with_its_key(broker):
    config = ServerConfig(port=0, events=RULE, sink=broker.url)
    with serving(FakeEngine(), config) as (address, server):

        async def cameras():  # noqa: ANN202
            return await asyncio.gather(
                *(
                    run_camera(address, f"cam.{i}", blink_units(6), speed=4, sample_fps=4, behaviors=BARKING)
                    for i in range(2)
                )
            )

        reports = asyncio.run(cameras())
        _on_server_loop(server, _wait_caught_up(server, 20))
        stored = _on_server_loop(server, server.store.query(None, limit=1000))  # type: ignore[attr-defined]
    published = asyncio.run(_read_stream(broker.url))
    assert all(r.error is None for r in reports)
    assert len(stored) >= 8
    assert [m["msg_id"] for m in published] == [r.key for r in stored], "in order, once, keyed for de-duplication"
    assert [m["cursor"] for m in published] == [r.cursor for r in stored]
    first = published[0]
    assert first["subject"] == f"petstream.events.cam%2E{first['device_id'][-1]}.barking.{first['state'].lower()}"
    assert {m["device_id"] for m in published} == {"cam.0", "cam.1"}


def test_a_broker_killed_for_10_s_while_events_flow_loses_none(broker):
    config = ServerConfig(port=0, events=RULE, sink=broker.url)
    with serving(FakeEngine(), config) as (address, server):

        async def scenario():  # noqa: ANN202
            cams = asyncio.gather(
                *(
                    run_camera(address, f"cam-{i}", blink_units(22), speed=1, sample_fps=4, behaviors=BARKING)
                    for i in range(2)
                )
            )
            await asyncio.sleep(4)
            before = len(await asyncio.to_thread(_on_server_loop, server, server.store.query(None, limit=1000)))
            await asyncio.to_thread(broker.kill)
            await asyncio.sleep(10)
            during = len(await asyncio.to_thread(_on_server_loop, server, server.store.query(None, limit=1000)))
            await asyncio.to_thread(broker.start)
            return before, during, await cams

        before, during, reports = asyncio.run(scenario())
        _on_server_loop(server, _wait_caught_up(server, 30))
        stored = _on_server_loop(server, server.store.query(None, limit=1000))  # type: ignore[attr-defined]
        pump = server.sinks[0]  # type: ignore[attr-defined]
        failures, lag = pump.failures, pump.lag
    published = asyncio.run(_read_stream(broker.url))
    print(f"events stored: {len(stored)} ({during - before} while the broker was down); published: {len(published)}")
    assert all(r.error is None for r in reports), "the cameras never noticed"
    assert during - before >= 6, "events kept flowing (and being stored) while the broker was down"
    assert failures > 0 and lag == 0, "the sink noticed the outage, then caught up"
    keys = [m["msg_id"] for m in published]
    assert len(keys) == len(set(keys)), "JetStream kept each event once (Nats-Msg-Id de-duplication)"
    assert set(keys) == {r.key for r in stored}, "nothing lost"
    assert sorted(m["cursor"] for m in published) == [r.cursor for r in stored]
