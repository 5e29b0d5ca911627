"""Faults stay local: a backend that hangs or raises mid-batch fails only that batch's frames (within the deadline,
reported to their cameras, counted) while the other cameras keep getting scores; a camera process that vanishes
releases everything it held."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence

from factories import FakeEngine, blink_units, serving

from inference.types import VQARequest, VQAResult
from ingest.config import ServerConfig
from protos.petstream.v1 import petstream_pb2 as pb
from simulators.camera import run_camera
from streaming.batcher import BatchPolicy

DEADLINE_S = 1.0


class BadBatch(FakeEngine):
    """Hangs (until released) or raises on its `bad`-th batch; every other batch is answered."""

    def __init__(self, bad: int, mode: str) -> None:
        super().__init__()
        self.bad, self.mode = bad, mode
        self.calls = 0
        self.release = threading.Event()
        self.bad_size = 0
        self.bad_at = 0.0

    def run(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        self.calls += 1
        if self.calls == self.bad:
            self.bad_size, self.bad_at = len(requests), time.monotonic()
            if self.mode == "hang":
                self.release.wait(120)
            else:
                raise RuntimeError("backend fault injected by the test")
        return super().run(requests)


def _run_cameras(engine: BadBatch) -> tuple[list, dict, object]:
    config = ServerConfig(port=0, batch=BatchPolicy(max_batch=2, max_wait_ms=5, deadline_s=DEADLINE_S))
    arrivals: dict[str, list[tuple[float, str]]] = {}

    def note(device: str, msg: pb.ServerMessage) -> None:
        kind = msg.WhichOneof("kind")
        label = f"warning:{msg.warning.code}:{msg.warning.message}" if kind == "warning" else kind
        arrivals.setdefault(device, []).append((time.monotonic(), label))

    with serving(engine, config) as (address, server):

        async def scenario():  # noqa: ANN202
            units = blink_units(6)
            cams = [
                run_camera(address, f"cam-{i}", units, speed=1, sample_fps=4, want_scores=True, on_message=note)
                for i in range(3)
            ]
            return await asyncio.gather(*cams)

        reports = asyncio.run(scenario())
        batcher = server.service.batcher  # type: ignore[attr-defined]
        counters = {"timed_out": batcher.timed_out_batches, "failed": batcher.failed_batches}
        counters["stuck"] = batcher.stuck_threads
        engine.release.set()
        for _ in range(50):
            if batcher.stuck_threads == 0:
                break
            time.sleep(0.05)
        counters["stuck_after_release"] = batcher.stuck_threads
    return reports, arrivals, counters


def _model_errors(arrivals: dict) -> list[tuple[str, float, str]]:
    return [(d, t, m) for d, events in arrivals.items() for t, m in events if m.startswith("warning:MODEL_ERROR")]


def test_a_hanging_backend_fails_only_its_batch_within_the_deadline_and_the_other_cameras_keep_scoring():
    engine = BadBatch(bad=5, mode="hang")
    reports, arrivals, counters = _run_cameras(engine)
    errors = _model_errors(arrivals)
    assert counters["timed_out"] == 1 and counters["stuck"] == 1 and counters["stuck_after_release"] == 0
    assert engine.bad_size >= 1 and len(errors) == engine.bad_size, errors  # exactly that batch's frames
    for _, at, message in errors:
        assert "deadline" in message
        assert at - engine.bad_at < DEADLINE_S + 1.0, "reported within the deadline (plus slack)"
    last_error = max(at for _, at, _ in errors)
    for r in reports:
        assert r.error is None, r.error
        later = [t for t, label in arrivals[r.device_id] if label == "scores" and t > last_error]
        assert later, f"{r.device_id} kept getting scores after the hang"
    assert sum(len(r.scores) for r in reports) > 3 * 15, "the model kept running for everyone"


def test_a_raising_backend_fails_only_its_batch_and_says_so():
    engine = BadBatch(bad=5, mode="raise")
    reports, arrivals, counters = _run_cameras(engine)
    errors = _model_errors(arrivals)
    assert counters["failed"] == 1 and counters["timed_out"] == 0
    assert engine.bad_size >= 1 and len(errors) == engine.bad_size, errors  # exactly that batch's frames
    assert all("fault injected" in m for _, _, m in errors)
    assert all(r.error is None and len(r.scores) >= 20 for r in reports)


def test_a_camera_process_that_vanishes_releases_its_session_queues_tasks_and_threads():
    config = ServerConfig(port=0)
    with serving(FakeEngine(delay_s=0.02), config) as (address, server):
        service = server.service  # type: ignore[attr-defined]
        loop = _server_loop(server)

        def tasks() -> int:
            return asyncio.run_coroutine_threadsafe(_count_tasks(), loop).result(5)

        warm = asyncio.run(run_camera(address, "warm-up", blink_units(1), speed=0))  # the pools' threads start
        assert warm.error is None
        baseline_tasks, baseline_threads, baseline_fds = (
            tasks(),
            threading.active_count(),
            len(os.listdir("/proc/self/fd")),
        )
        cmd = [sys.executable, "-m", "petstream.cli", "camera", "--target", address, "--seconds", "60",
               "--width", "160", "--height", "96", "--device-id", "doomed"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not service.sessions and time.monotonic() < deadline:
                time.sleep(0.05)
            assert service.sessions, "the camera connected"
            session = next(iter(service.sessions.values()))
            while session.stats.frames_scored < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            gone = weakref.ref(session)
            busy_tasks = tasks()
            del session
        finally:
            proc.send_signal(signal.SIGKILL)  # no half-close, no goodbye: the socket just closes
            proc.wait(10)
        for _ in range(100):
            if not service.sessions and tasks() <= baseline_tasks:
                break
            time.sleep(0.05)
        gc.collect()
        assert not service.sessions and service.batcher.queued() == 0
        assert gone() is None, "nothing holds the vanished camera's session (decoder, queues, pictures)"
        assert busy_tasks > baseline_tasks and tasks() <= baseline_tasks, (baseline_tasks, busy_tasks, tasks())
        assert threading.active_count() <= baseline_threads, "no thread left behind"
        assert len(os.listdir("/proc/self/fd")) <= baseline_fds, "no file descriptor left behind"


def _server_loop(server: object) -> asyncio.AbstractEventLoop:
    return server.store._loop  # type: ignore[attr-defined]


async def _count_tasks() -> int:
    return len(asyncio.all_tasks())
