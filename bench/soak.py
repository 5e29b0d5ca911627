"""Soak: simulated cameras connect, stream, disconnect (cleanly or by vanishing) at random against a server process;
its RSS, open file descriptors, threads and asyncio tasks are sampled over time, then written as JSON and a PNG.

Phases: warm-up (every camera streams once, so pools and caches exist), baseline (no camera), churn (the soak
itself), settle (every camera gone). Checks: RSS growth over the churn after warm-up, and file descriptors, threads
and tasks back to the baseline once the cameras left.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

from bench.restart import ServerProcess, free_port, render
from ingest.runtime import PREFIX, process_stats
from simulators.camera import run_camera
from simulators.fleet import fleet_specs
from simulators.video import EncodedUnit

_RUNTIME = re.compile(re.escape(PREFIX) + r"(\{.*\})")
RSS_CHECK_MIN_CHURN_S = 300  # shorter churn windows measure the allocator warming up, not a leak


@dataclass
class Churn:
    """What the cameras did."""

    connects: int = 0
    clean_ends: int = 0
    vanished: int = 0
    errors: list[str] = field(default_factory=list)
    events: int = 0  # events the cameras that ended cleanly received


def shifted(units: list[EncodedUnit], start: int, count: int, offset_us: int) -> list[EncodedUnit]:
    """`count` units from keyframe `start` on, with pts moved so one device's clock keeps going forward."""
    part = units[start : start + count]
    base = part[0].pts_us
    return [replace(u, pts_us=u.pts_us - base + offset_us) for u in part]


async def camera_churn(
    target: str,
    device: str,
    clip: list[EncodedUnit],
    until: float,
    churn: Churn,
    rng: random.Random,
    *,
    lengths: tuple[float, float],
    pauses: tuple[float, float],
    fps: float,
) -> None:
    keys = [i for i, u in enumerate(clip) if u.key]
    offset = 1_000_000
    while time.monotonic() < until:
        seconds = rng.uniform(*lengths)
        start = rng.choice([k for k in keys if k + seconds * fps <= len(clip)] or keys[:1])
        units = shifted(clip, start, int(seconds * fps), offset)
        offset = units[-1].pts_us + 1_000_000
        vanish = rng.random() < 0.5
        churn.connects += 1
        camera = asyncio.create_task(run_camera(target, device, units, speed=1.0))
        if vanish:  # gone mid-stream: no half-close, the call is cancelled
            await asyncio.sleep(rng.uniform(0.2, 0.9) * seconds)
            camera.cancel()
            await asyncio.gather(camera, return_exceptions=True)
            churn.vanished += 1
        else:
            report = await camera
            churn.clean_ends += 1
            churn.events += len(report.events)
            if report.error:
                churn.errors.append(f"{device}: {report.error}")
        await asyncio.sleep(rng.uniform(*pauses))


class Sampler:
    """Samples the server process from /proc and its runtime log line (asyncio tasks, streams)."""

    def __init__(self, server: ServerProcess, interval_s: float) -> None:
        self.server = server
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self.phase = "start"
        self._t0 = time.monotonic()
        self._log_pos = 0
        self._runtime: dict[str, Any] = {}

    def sample(self) -> dict[str, Any]:
        assert self.server.proc is not None
        stats: dict[str, Any] = dict(process_stats(self.server.proc.pid))
        self._read_log()
        for k in ("asyncio_tasks", "streams", "subscribers", "episodes_away", "events_stored", "store_backlog"):
            stats[k] = self._runtime.get(k)
        stats.update(t_s=round(time.monotonic() - self._t0, 2), phase=self.phase)
        self.samples.append(stats)
        return stats

    def _read_log(self) -> None:
        with open(self.server.log_path) as f:
            f.seek(self._log_pos)
            chunk = f.read()
            self._log_pos = f.tell()
        for m in _RUNTIME.finditer(chunk):
            self._runtime = json.loads(m.group(1))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)


async def _settle(sampler: Sampler, seconds: float) -> dict[str, Any]:
    """Wait `seconds` (no camera connected) and return the last sample, taken after a fresh runtime line."""
    await asyncio.sleep(seconds)
    await asyncio.sleep(sampler.interval_s * 1.5)
    return sampler.sample()


async def soak(
    *,
    cameras: int,
    minutes: float,
    model: str,
    sample_s: float,
    seed: int,
    work_dir: str,
    print_fn: Any = print,
) -> dict[str, Any]:
    churn_s = minutes * 60
    clips = max(1, min(cameras, 8))
    specs = fleet_specs(clips, width=320, height=180, fps=5, gop=10, seconds=60, seed=seed)
    started = time.monotonic()
    rendered = list(render(specs).values())
    print_fn(f"rendered {clips} clips of 60 s in {time.monotonic() - started:.1f} s")
    data_dir = tempfile.mkdtemp(prefix="soak-data-", dir=work_dir)
    args = ["--model", model, "--port", str(free_port()), "--data-dir", data_dir]
    # the runtime line (asyncio tasks) this often; a crash leaves every thread's Python stack in the log
    env = {"PETSTREAM_STATS_INTERVAL_S": str(sample_s), "PYTHONFAULTHANDLER": "1"}
    server = ServerProcess(args, os.path.join(work_dir, "server.log"), env=env)
    await server.start()
    sampler = Sampler(server, sample_s)
    sampling = asyncio.create_task(sampler.run())
    rng = random.Random(seed)
    devices = [f"soak-{i + 1}" for i in range(cameras)]
    churn = Churn()
    phases: dict[str, Any] = {}
    try:
        # warm-up: every camera streams once, together
        sampler.phase = "warm-up"
        warm_s = min(20.0, max(6.0, churn_s * 0.1))
        await asyncio.gather(
            *(
                run_camera(server.address, d, shifted(rendered[i % clips], 0, int(warm_s * 5), 1_000_000))
                for i, d in enumerate(devices)
            )
        )
        sampler.phase = "baseline"
        phases["baseline"] = await _settle(sampler, 3.0)
        print_fn(f"baseline (after warm-up, no camera): {_brief(phases['baseline'])}")
        sampler.phase = "churn"
        churn_started = time.monotonic()
        until = churn_started + churn_s
        lengths = (min(10.0, churn_s / 4), min(60.0, max(churn_s / 2, 12.0)))
        await asyncio.gather(
            *(
                camera_churn(
                    server.address,
                    d,
                    rendered[i % clips],
                    until,
                    churn,
                    random.Random(rng.random()),
                    lengths=lengths,
                    pauses=(0.5, 8.0),
                    fps=5,
                )  # fmt: skip
                for i, d in enumerate(devices)
            )
        )
        phases["churn_s"] = round(time.monotonic() - churn_started, 1)
        sampler.phase = "settle"
        phases["end"] = await _settle(sampler, 5.0)
        print_fn(f"after every camera left: {_brief(phases['end'])}")
    finally:
        sampling.cancel()
        code, _ = await server.stop(signal.SIGTERM)
    crash: dict[str, Any] = {}
    if code not in (0, None):
        crash["server_log_tail"] = _tail(server.log_path)
        print_fn(f"the server exited with code {code}; its log ends:\n{crash['server_log_tail']}")
    return summarize(
        sampler.samples, phases, churn, cameras=cameras, minutes=minutes, model=model, exit_code=code, **crash
    )


def _tail(path: str, lines: int = 80) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _brief(s: dict[str, Any]) -> str:
    return (
        f"RSS {s['rss_bytes'] / 2**20:.1f} MiB, fds {s['open_fds']}, threads {s['threads']}, "
        f"tasks {s['asyncio_tasks']}, streams {s['streams']}"
    )


def summarize(samples: list[dict[str, Any]], phases: dict[str, Any], churn: Churn, **run: Any) -> dict[str, Any]:
    churning = [s for s in samples if s["phase"] == "churn" and s["rss_bytes"] > 0]  # 0: the server was gone
    window = max(1, len(churning) // 10)
    rss_first = statistics.median(s["rss_bytes"] for s in churning[:window]) if churning else 0
    rss_last = statistics.median(s["rss_bytes"] for s in churning[-window:]) if churning else 0
    growth = round((rss_last / rss_first - 1) * 100, 2) if rss_first else None
    base, end = phases.get("baseline", {}), phases.get("end", {})
    checks: dict[str, Any] = {
        "rss_growth_lt_5pct": (growth is not None and growth < 5.0)
        if phases.get("churn_s", 0) >= RSS_CHECK_MIN_CHURN_S
        else None,
        "fds_back_to_baseline": end.get("open_fds", 1e9) <= base.get("open_fds", -1),
        "threads_back_to_baseline": end.get("threads", 1e9) <= base.get("threads", -1),
        "tasks_back_to_baseline": (end.get("asyncio_tasks") or 1e9) <= (base.get("asyncio_tasks") or -1),
        "no_stream_left": end.get("streams") == 0,
        # a server that died (its samples read 0) passes no other check; its exit code says how
        "server_survived": all(s["rss_bytes"] > 0 for s in samples) and run.get("exit_code") in (0, None),
    }
    return {
        **run,
        "churn": churn.__dict__ | {"errors": churn.errors[:20], "error_count": len(churn.errors)},
        "phases": phases,
        "rss_first_window_mib": round(rss_first / 2**20, 2),
        "rss_last_window_mib": round(rss_last / 2**20, 2),
        "rss_growth_pct": growth,
        "peak_streams": max((s["streams"] or 0 for s in samples), default=0),
        "checks": checks,
        "passed": all(v is not False for v in checks.values()),
        "samples": samples,
    }


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t_s"] / 60 for s in samples]
    series = [
        ("RSS (MiB)", [s["rss_bytes"] / 2**20 for s in samples]),
        ("open file descriptors", [s["open_fds"] for s in samples]),
        ("threads", [s["threads"] for s in samples]),
        ("asyncio tasks", [s["asyncio_tasks"] or 0 for s in samples]),
    ]
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 9), sharex=True)
    for ax, (label, values) in zip(axes, series, strict=True):
        ax.plot(t, values, color="tab:blue")
        ax.set_ylabel(label)
        streams = ax.twinx()
        streams.plot(t, [s["streams"] or 0 for s in samples], color="tab:gray", alpha=0.4, linewidth=0.8)
        streams.set_ylabel("streams", color="tab:gray")
        for phase, color in (("warm-up", "tab:orange"), ("settle", "tab:green")):
            times = [s["t_s"] / 60 for s in samples if s["phase"] == phase]
            if times:
                ax.axvspan(min(times), max(times), color=color, alpha=0.12)
    axes[-1].set_xlabel("minutes")
    growth = result["rss_growth_pct"]
    fig.suptitle(
        f"petstream soak: {result['cameras']} cameras churning for {result['minutes']:g} min ({result['model']}); "
        f"RSS growth over the churn {growth if growth is not None else '-'} %"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(
    *, cameras: int, minutes: float, model: str, sample_s: float, seed: int, json_out: str, png_out: str | None
) -> int:
    with tempfile.TemporaryDirectory(prefix="petstream-soak-") as work:
        result = asyncio.run(
            soak(cameras=cameras, minutes=minutes, model=model, sample_s=sample_s, seed=seed, work_dir=work)
        )
    os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
    with open(json_out, "w") as f:
        json.dump(result, f, indent=1)
    png = png_out or os.path.splitext(json_out)[0] + ".png"
    plot(result, png)
    summary = {k: v for k, v in result.items() if k not in ("samples", "phases")}
    print(json.dumps(summary, indent=1))
    print(f"wrote {json_out} and {png}")
    return 0 if result["passed"] else 1
