"""Load-generation helpers for `petstream bench pipeline`: pre-encoded clips, a PyAV decode baseline, camera sets."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import re
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import av

from protos.petstream.v1 import petstream_pb2 as pb
from simulators.camera import CameraReport, run_camera
from simulators.credentials import ClientSecurity
from simulators.video import CHEAP, EncodedUnit, EncodingProfile, synthetic_units


def encode_clip(
    seed: int,
    *,
    width: int,
    height: int,
    fps: float = 15.0,
    gop: int = 30,
    seconds: float,
    still_fraction: float = 0.5,
    profile: EncodingProfile = CHEAP,
    every_behavior: bool = True,
) -> list[EncodedUnit]:
    """Render and encode a scripted synthetic camera once, before anything is measured."""
    from simulators.timeline import Timeline

    timeline = Timeline.scripted(
        seed, duration_s=max(seconds, 1.0), still_fraction=still_fraction, every_behavior=every_behavior
    )
    return list(
        synthetic_units(
            seed, width=width, height=height, fps=fps, gop=gop, duration_s=seconds, timeline=timeline, profile=profile
        )
    )


def looped(units: Sequence[EncodedUnit], times: int) -> list[EncodedUnit]:
    """The clip `times` times in a row with increasing pts (a longer stream from one encoding; starts on a keyframe)."""
    if not units:
        return []
    step = units[1].pts_us - units[0].pts_us if len(units) > 1 else 66_667
    period = units[-1].pts_us - units[0].pts_us + step
    return [EncodedUnit(u.data, u.pts_us + k * period, u.key, u.labels) for k in range(max(times, 1)) for u in units]


def decode_baseline(units: Sequence[EncodedUnit], *, threads: int, repeats: int) -> dict[str, float]:
    """PyAV alone: `threads` threads each parse and decode the clip `repeats` times (one FFmpeg thread per decoder,
    like the server's); aggregate frames/s."""
    counts = [0] * threads

    def work(i: int) -> None:
        for _ in range(repeats):
            ctx = av.CodecContext.create("h264", "r")
            ctx.thread_count = 1  # as the server's per-camera decoder: parallelism comes from the threads here
            for unit in units:
                for packet in ctx.parse(unit.data):
                    counts[i] += len(ctx.decode(packet))
            for packet in ctx.parse(None):
                counts[i] += len(ctx.decode(packet))
            counts[i] += len(ctx.decode(None))

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    frames = sum(counts)
    cpu_ms = wall * threads / max(frames, 1) * 1e3  # every thread busy the whole time
    return {
        "threads": threads,
        "frames": frames,
        "wall_s": round(wall, 3),
        "fps": frames / wall,
        "cpu_ms_per_frame": cpu_ms,
    }


@dataclass
class Arrivals:
    """Client-side record of every FrameScores message: (monotonic arrival, device, pts_us, server total_ms),
    and the model time of its batch (vision_ms, text_ms: equal for every frame of one batch)."""

    scores: list[tuple[float, str, int, float]] = field(default_factory=list)
    model_ms: list[tuple[float, float]] = field(default_factory=list)

    def on_message(self, device_id: str, msg: pb.ServerMessage) -> None:
        if msg.WhichOneof("kind") == "scores":
            s = msg.scores
            self.scores.append((time.monotonic(), device_id, s.pts_us, s.timings.total_ms))
            self.model_ms.append((s.timings.vision_ms, s.timings.text_ms))


async def run_cameras(
    target: str,
    streams: Mapping[str, Sequence[EncodedUnit]],
    *,
    speed: float,
    sample_fps: float,
    sampling: str = "",
    want_scores: bool = True,
    arrivals: Arrivals | None = None,
    wait: bool | None = None,
    security: ClientSecurity | None = None,
) -> tuple[list[CameraReport], float, float]:
    """Run one camera per entry of `streams` at once; returns the reports and the monotonic start and end."""
    t0 = time.monotonic()
    reports = await asyncio.gather(
        *(
            run_camera(
                target,
                device_id,
                units,
                speed=speed,
                sample_fps=sample_fps,
                sampling=sampling,
                want_scores=want_scores,
                wait=wait,
                on_message=arrivals.on_message if arrivals else None,
                security=security,
            )
            for device_id, units in streams.items()
        )
    )
    return list(reports), t0, time.monotonic()


_STATS_LINE = re.compile(r"camera (\S+) disconnected \(session \w+\): SessionStats\((.*)\)\s*$")
_COUNTER = re.compile(r"(\w+)=Counter\(\{([^}]*)\}\)")
_INT = re.compile(r"(\w+)=(\d+)(?=[,)]|$)")


def session_stats_from_log(path: str) -> dict[str, dict[str, Any]]:
    """SessionStats of every finished camera, parsed from the server's disconnect log lines (last one per device;
    text or --log-format json)."""
    stats: dict[str, dict[str, Any]] = {}
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return stats
    for line in lines:
        if line.startswith("{"):  # --log-format json: the stream_close line carries the totals as fields
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "stream_close":
                stats[record["device_id"]] = dict(record["totals"])
            continue
        m = _STATS_LINE.search(line)
        if not m:
            continue
        body = m.group(2)
        entry: dict[str, Any] = {}
        for name, inner in _COUNTER.findall(body):
            entry[name] = {k.strip(" '\""): int(v) for k, v in (p.split(":") for p in inner.split(",") if ":" in p)}
        for name, value in _INT.findall(_COUNTER.sub("", body)):
            entry[name] = int(value)
        stats[m.group(1)] = entry
    return stats


def sum_stats(stats: dict[str, dict[str, Any]], devices: Sequence[str]) -> dict[str, Any]:
    """Totals of the numeric SessionStats fields (and the dropped/warnings counters) over `devices`."""
    total: dict[str, Any] = {"sessions_logged": sum(d in stats for d in devices)}
    for d in devices:
        for k, v in stats.get(d, {}).items():
            if isinstance(v, int):
                total[k] = int(total.get(k, 0)) + v  # type: ignore[call-overload]
            elif isinstance(v, dict):
                bucket = total.setdefault(k, {})
                for kk, vv in v.items():
                    bucket[kk] = bucket.get(kk, 0) + vv  # type: ignore[union-attr]
    return total


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def machine_info() -> dict[str, Any]:
    import numpy
    import torch

    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "av": av.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def child_pids() -> list[int]:
    """Processes this one started (Linux /proc), e.g. the `petstream serve` subprocess."""
    pids: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of one process by thread role: main_thread (the server's asyncio loop: gRPC and sessions),
    decode and model (the server names those pools' OS threads ps-decode / ps-model), other (gRPC core etc.)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"main_thread": 0.0, "decode": 0.0, "model": 0.0, "other_threads": 0.0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        role = {"ps-decode": "decode", "ps-model": "model"}.get(comm, "other_threads")
        out["main_thread" if int(tid) == pid else role] += cpu
    return out
