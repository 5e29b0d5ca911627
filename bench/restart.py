"""Restart while cameras stream: SIGTERM, start again; what a WatchEvents subscriber got, against the scripts.

Both runs (with and without the restart) stream the same scripted cameras (sim-tiny) and are scored the same way:
every event delivered exactly once (by key), every episode one STARTED and one ENDED, episodes against the scripts
(precision, recall), truth episodes reported more than once (split), and whether the cameras came back by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from protos.petstream.v1 import petstream_pb2 as pb
from simulators.camera import Backoff, CameraReport, run_camera
from simulators.fleet import SyntheticCameraSpec, fleet_specs
from simulators.golden import merge_scores, predicted_episodes, score_camera, truth_episodes
from simulators.subscriber import watch_events
from simulators.timeline import BEHAVIORS
from simulators.video import EncodedUnit

CAMERA_BACKOFF = Backoff(initial_s=0.5, max_s=4.0)


@dataclass
class ServerProcess:
    """`petstream serve` as a child process on a fixed port (a restart reuses the port and the data folder)."""

    args: list[str]
    log_path: str
    env: dict[str, str] = field(default_factory=dict)  # extra environment (PETSTREAM_* settings)
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    starts: list[float] = field(default_factory=list)  # seconds from launch to listening, each start

    async def start(self, timeout_s: float = 180.0) -> None:
        await asyncio.to_thread(self._start, timeout_s)

    def _start(self, timeout_s: float) -> None:
        launched = time.monotonic()
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child from here on
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        cmd = [sys.executable, "-m", "petstream.cli", "serve", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited ({self.proc.poll()}) before listening; see {self.log_path}")
            if line.startswith("petstream serving on "):
                self.address = line.split()[3]
                self.starts.append(time.monotonic() - launched)
                return
        raise RuntimeError(f"server did not listen within {timeout_s:g} s; see {self.log_path}")

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> tuple[int | None, float]:
        """Signal it and wait for the exit: (exit code, seconds it took)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
            return (proc.returncode if proc else None), 0.0
        started = time.monotonic()
        proc.send_signal(sig)
        try:
            code = await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = await asyncio.to_thread(proc.wait)
        if proc.stdout is not None:
            proc.stdout.close()
        return code, time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(specs: list[SyntheticCameraSpec]) -> dict[str, list[EncodedUnit]]:
    """Encode every camera's video up front: the fleet then costs no CPU to render while it streams."""
    from simulators.fleet import _units

    return {s.device_id: list(_units(s)) for s in specs}


async def scenario(
    units: dict[str, list[EncodedUnit]],
    *,
    speed: float,
    restart_at_s: float | None,
    model: str,
    work_dir: str,
    server_args: list[str] = (),  # type: ignore[assignment]
    outage_s: float = 0.0,
) -> dict[str, Any]:
    """One run: a server, the cameras (reconnecting), one subscriber (reconnecting); optionally a restart."""
    data_dir = tempfile.mkdtemp(prefix="data-", dir=work_dir)
    args = ["--model", model, "--port", str(free_port()), "--data-dir", data_dir, *server_args]
    server = ServerProcess(args, os.path.join(work_dir, "server.log"))
    await server.start()
    try:
        return await _run_scenario(server, units, speed=speed, restart_at_s=restart_at_s, outage_s=outage_s)
    finally:
        await server.stop(signal.SIGKILL)  # after a failure part-way: no server outlives the run (else a no-op)


async def _run_scenario(
    server: ServerProcess,
    units: dict[str, list[EncodedUnit]],
    *,
    speed: float,
    restart_at_s: float | None,
    outage_s: float,
) -> dict[str, Any]:
    stop_watch = asyncio.Event()
    arrivals: list[float] = []
    progress = {"cursor": 0}

    def on_record(record: pb.EventRecord) -> None:
        arrivals.append(time.monotonic())
        progress["cursor"] = record.cursor

    watcher = asyncio.create_task(watch_events(server.address, stop=stop_watch, on_record=on_record))
    cameras = [
        asyncio.create_task(run_camera(server.address, device, u, speed=speed, reconnect=CAMERA_BACKOFF))
        for device, u in units.items()
    ]
    restart: dict[str, Any] = {}
    started = time.monotonic()
    if restart_at_s is not None:
        await asyncio.sleep(restart_at_s)
        restart["at_s"] = round(time.monotonic() - started, 3)
        restart["sigterm_at"] = time.monotonic()
        code, drain_s = await server.stop(signal.SIGTERM)
        restart.update(exit_code=code, exit_s=round(drain_s, 3))
        await asyncio.sleep(outage_s)
        await server.start()
        restart["back_s"] = round(time.monotonic() - restart["sigterm_at"], 3)
    reports: list[CameraReport] = list(await asyncio.gather(*cameras))
    # the subscriber has everything once it reached the last event stored
    from simulators.subscriber import list_events

    stored = await list_events(server.address, page_size=1000)
    deadline = time.monotonic() + 30
    last = stored[-1].cursor if stored else 0
    while time.monotonic() < deadline and (not watcher.done()) and progress["cursor"] < last:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    stop_watch.set()
    watch = await watcher
    code, _ = await server.stop(signal.SIGTERM)
    result = analyse(reports, watch.records, arrivals, restart.get("sigterm_at"))
    result["stored_events"] = len(stored)
    result["subscriber_connections"] = watch.connections
    result["subscriber_stream_errors"] = watch.stream_errors
    result["server_starts_s"] = [round(s, 2) for s in server.starts]
    result["final_exit_code"] = code
    if restart:
        restart.pop("sigterm_at", None)
        result["restart"] = restart
    return result


def analyse(
    reports: list[CameraReport], records: list[pb.EventRecord], arrivals: list[float], restart_at: float | None
) -> dict[str, Any]:
    """Exactly-once by key, episodes against the scripts, splits, and how the cameras came back."""
    keys = [f"{r.event.event_id}/{pb.EventState.Name(r.event.state)}" for r in records]
    per_id = Counter(r.event.event_id for r in records)
    states: dict[str, Counter[str]] = {}
    for r in records:
        states.setdefault(r.event.event_id, Counter())[pb.EventState.Name(r.event.state)] += 1
    unpaired = sorted(i for i, c in states.items() if c != Counter({"STARTED": 1, "ENDED": 1}))
    behaviors = list(BEHAVIORS)
    per_camera = []
    splits = 0
    spanning = 0
    for report in reports:
        mine = [
            (r.event, at) for r, at in zip(records, arrivals, strict=False) if r.event.device_id == report.device_id
        ]
        seen = replace(report, events=[e for e, _ in mine], event_arrivals=[at for _, at in mine])
        per_camera.append(score_camera(seen, behaviors))
        preds = predicted_episodes(seen)
        truths = truth_episodes(seen.truth, behaviors, 2_000_000)
        for t in truths:
            hits = [p for p, _ in preds if p.behavior == t.behavior and p.start_us < t.end_us and p.end_us > t.start_us]
            splits += max(0, len(hits) - 1)
        if restart_at is not None:
            started_at = {e.event_id: at for e, at in mine if e.state == pb.STARTED}
            spanning += sum(
                1 for e, at in mine if e.state == pb.ENDED and started_at.get(e.event_id, at) < restart_at < at
            )
    merged = merge_scores(per_camera)
    reconnects = [s for r in reports for s in r.reconnect_s]
    camera_keys = [f"{e.event_id}/{pb.EventState.Name(e.state)}" for r in reports for e in r.events]
    return {
        "cameras": len(reports),
        "events_delivered": len(records),
        "unique_keys": len(set(keys)),
        "duplicates": len(keys) - len(set(keys)),
        "episodes": len(per_id),
        "unpaired_episode_ids": unpaired[:20],
        "unpaired": len(unpaired),
        "split_truth_episodes": splits,
        "episodes_spanning_restart": spanning,
        "per_behavior": {b: s.as_dict() for b, s in merged.items()},
        "truth_episodes": sum(s.truth for s in merged.values()),
        "matched_truth": sum(s.matched_truth for s in merged.values()),
        "predicted": sum(s.predicted for s in merged.values()),
        "matched_predicted": sum(s.matched_predicted for s in merged.values()),
        "camera_events_not_delivered": len(set(camera_keys) - set(keys)),
        "cameras_failed": [f"{r.device_id}: {r.error}" for r in reports if r.error],
        "cameras_reconnected": sum(r.connections > 1 for r in reports),
        "camera_stream_errors": dict(Counter(e.split(":")[0] for r in reports for e in r.stream_errors)),
        "camera_first_stream_errors": sorted({r.stream_errors[0] for r in reports if r.stream_errors}),
        "reconnect_s_median": round(statistics.median(reconnects), 3) if reconnects else None,
        "reconnect_s_max": round(max(reconnects), 3) if reconnects else None,
        "units_skipped": sum(r.units_skipped for r in reports),
    }


def run(
    *,
    cameras: int,
    seconds: float,
    speed: float,
    restart_at_s: float | None,
    model: str = "sim-tiny",
    width: int = 320,
    height: int = 180,
    fps: float = 5.0,
    baseline: bool = True,
    json_out: str | None = None,
    print_fn: Any = print,
    keep: bool = False,
) -> dict[str, Any]:
    specs = fleet_specs(cameras, width=width, height=height, fps=fps, gop=int(fps * 2), seconds=seconds)
    t0 = time.monotonic()
    units = render(specs)
    print_fn(f"rendered {sum(map(len, units.values()))} units for {cameras} cameras in {time.monotonic() - t0:.1f} s")
    at = restart_at_s if restart_at_s is not None else seconds / speed / 2
    out: dict[str, Any] = {
        "cameras": cameras,
        "seconds": seconds,
        "speed": speed,
        "model": model,
        "video": f"{width}x{height}@{fps:g}",
    }
    with contextlib.ExitStack() as stack:
        work = tempfile.mkdtemp(prefix="petstream-restart-")
        if not keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        runs = [("restart", at)] + ([("baseline", None)] if baseline else [])
        for name, restart_at in runs:
            work_dir = os.path.join(work, name)
            os.makedirs(work_dir)
            if keep:
                print_fn(f"{name}: server log in {work_dir}/server.log")
            print_fn(
                f"{name}: {cameras} cameras, {seconds:g} s of video at {speed:g}x"
                + (f", SIGTERM at {restart_at:.1f} s" if restart_at is not None else "")
            )
            out[name] = asyncio.run(
                scenario(units, speed=speed, restart_at_s=restart_at, model=model, work_dir=work_dir)
            )
            print_fn(json.dumps({k: v for k, v in out[name].items() if k != "per_behavior"}))
    if baseline:
        out["same_episodes"] = {
            k: (out["restart"][k], out["baseline"][k]) for k in ("matched_truth", "predicted", "truth_episodes")
        }
    if json_out:
        with open(json_out, "w") as f:
            json.dump(out, f, indent=2)
        print_fn(f"wrote {json_out}")
    return out
