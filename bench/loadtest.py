"""`petstream loadtest`: server settings x client concurrency -> latency, throughput and the knee (CSV, JSON, PNG).

Each cell runs live simulated cameras (real-time H.264, pre-encoded before anything is timed) and concurrent `Ask`
callers against one server, warms up, then measures a window (Triton perf_analyzer's honesty: percentiles over a
measured window, never averages alone). A frame's latency is the client's: the time its chunk was due to be sent
-> its FrameScores received (an event is emitted in the same callback as the scores that trigger it, so this is
frame -> event). Server-side counters (drops, rate cuts) come from the server's /metrics.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from bench.load import machine_info, percentile
from petstream.progress import bar
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import CHANNEL_OPTIONS, CameraReport, run_camera
from simulators.video import EncodedUnit

CSV_FIELDS = (
    "setting threads max_batch cameras asks offered_fps scored_fps p50_ms p90_ms p95_ms p99_ms max_ms n "
    "dropped rate_reduced ask_calls ask_per_s ask_p50_ms ask_p99_ms errors within_budget sustained skipped"
).split()


@dataclass(frozen=True)
class Setting:
    """One server configuration of the matrix (a server is started per setting, unless --target)."""

    threads: int | None = None  # torch threads for the model; None = the server's default (all cores)
    max_batch: int | None = None  # None = the server's default
    extra: tuple[str, ...] = ()  # more `petstream serve` flags, the same for every setting

    @property
    def label(self) -> str:
        t = "default" if self.threads is None else str(self.threads)
        b = "default" if self.max_batch is None else str(self.max_batch)
        return f"threads={t} max_batch={b}"

    def serve_args(self) -> list[str]:
        args = list(self.extra)
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        if self.max_batch is not None:
            args += ["--max-batch", str(self.max_batch)]
        return args


@dataclass(frozen=True)
class LoadParams:
    """The matrix and each cell's bounds. Every field has a default; `quick()` fits in 3 minutes here."""

    model: str = "sim-tiny"
    threads: tuple[int | None, ...] = (1, 2)
    max_batch: tuple[int | None, ...] = (1, 8)
    cameras: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    asks: tuple[int, ...] = (0, 2)  # concurrent Ask callers
    ask_cameras: tuple[int, ...] | None = None  # camera counts combined with Ask callers > 0; None = all
    sample_fps: float = 1.0  # what each camera asks the server to look at
    sampling: str = ""  # camera's StreamOpen.sampling; "" = the server's default policy
    warmup_s: float = 5.0
    window_s: float = 20.0
    drain_s: float = 30.0  # a cell's cameras must finish this long after their video ends, or they are cut
    max_asks_per_cell: int = 5000  # each cell is bounded in count as well as time
    p99_budget_ms: float = 1000.0
    stop_factor: float = 3.0  # a setting stops adding load once a cell's p99 passes this many budgets
    width: int = 640
    height: int = 360
    fps: float = 15.0
    still_fraction: float = 0.85
    clip_seeds: int = 4  # distinct scripted scenes (cameras take them in turn, started at staggered times)
    extra_serve_args: tuple[str, ...] = ()

    @classmethod
    def quick(cls) -> LoadParams:
        """2 x 2 settings, 3 camera counts and one cell with Ask callers each: under 3 minutes on 2 cores."""
        return cls(
            cameras=(4, 16, 40),
            asks=(0, 2),
            ask_cameras=(16,),
            max_batch=(1, 4),
            sample_fps=2.0,
            warmup_s=2.0,
            window_s=4.0,
            width=320,
            height=180,
        )

    def cells(self) -> list[tuple[int, int]]:
        """(cameras, Ask callers) of each cell, in the order they run: lightest first per Ask level."""
        return [
            (c, a)
            for a in self.asks
            for c in self.cameras
            if a == 0 or self.ask_cameras is None or c in self.ask_cameras
        ]

    def settings(self) -> list[Setting]:
        return [Setting(t, b, self.extra_serve_args) for t, b in itertools.product(self.threads, self.max_batch)]


@dataclass
class AskStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# -- one cell --------------------------------------------------------------------------------------------------


def scrape(url: str | None) -> dict[str, float]:
    """The server's counters that decide a cell (sums over labels), from its /metrics; {} without one."""
    if not url:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "petstream_frames_dropped_total" and s.labels.get("reason") in ("backpressure", "stale"):
                out["dropped"] = out.get("dropped", 0.0) + s.value
            elif s.name in ("petstream_frames_scored_total", "petstream_governor_rate_scale_ratio"):
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


async def _ask_loop(target: str, jpeg: bytes, lo: float, hi: float, budget: list[int], stats: AskStats) -> None:
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.BehaviorStreamStub(channel)
        while time.monotonic() < hi and budget[0] > 0:
            budget[0] -= 1
            t0 = time.monotonic()
            try:
                await stub.Ask(pb.AskRequest(image=jpeg), timeout=max(hi - t0, 0.1) + 30)
            except grpc.aio.AioRpcError as exc:
                stats.errors.append(exc.code().name)
                await asyncio.sleep(0.05)
                continue
            if t0 >= lo:
                stats.latencies_ms.append((time.monotonic() - t0) * 1e3)


async def _camera(
    target: str, device: str, units: Sequence[EncodedUnit], delay_s: float, p: LoadParams
) -> CameraReport:
    await asyncio.sleep(delay_s)
    return await run_camera(
        target, device, units, speed=1.0, want_scores=True, sample_fps=p.sample_fps, sampling=p.sampling, wait=False
    )


async def run_cell(
    target: str,
    clips: Sequence[Sequence[EncodedUnit]],
    cameras: int,
    asks: int,
    p: LoadParams,
    metrics_url: str | None,
    jpeg: bytes,
    tag: str = "lt",
) -> dict[str, Any]:
    """`cameras` live cameras and `asks` Ask callers at once; measures the window after the warm-up."""
    before = scrape(metrics_url)
    t0 = time.monotonic()
    lo, hi = t0 + p.warmup_s, t0 + p.warmup_s + p.window_s
    stagger = 1.0 / max(p.sample_fps, 1e-3) / max(cameras, 1)  # spread the cameras' sampled frames over an interval
    ask_stats, ask_budget = AskStats(), [p.max_asks_per_cell]
    tasks = [
        asyncio.ensure_future(_camera(target, f"{tag}-{cameras}-{i}", clips[i % len(clips)], i * stagger, p))
        for i in range(cameras)
    ]
    asks_tasks = [asyncio.ensure_future(_ask_loop(target, jpeg, lo, hi, ask_budget, ask_stats)) for _ in range(asks)]
    limit = p.warmup_s + p.window_s + stagger * cameras + p.drain_s
    everything: list[asyncio.Future[Any]] = [*tasks, *asks_tasks]
    done, late = await asyncio.wait(everything, timeout=limit)
    for task in late:  # bounded in time: cut what is still running
        task.cancel()
    reports = [t.result() for t in tasks if t in done and not t.cancelled() and t.exception() is None]
    after = scrape(metrics_url)
    latencies = [
        (at - r.sent_at(s.pts_us)) * 1e3
        for r in reports
        for s, at in zip(r.scores, r.score_arrivals, strict=True)
        if lo <= at < hi
    ]
    warnings = {w.code for r in reports for w in r.warnings}
    dropped = after.get("dropped", 0.0) - before.get("dropped", 0.0) if metrics_url else None
    if dropped is None:  # no /metrics (another kind of server): the cameras' own FRAMES_DROPPED warnings
        dropped = float(sum(w.code == "FRAMES_DROPPED" for r in reports for w in r.warnings))
    errors = [r.error for r in reports if r.error] + [f"camera cut after {limit:.0f} s" for _ in late if _ in tasks]
    row: dict[str, Any] = {
        "cameras": cameras,
        "asks": asks,
        "offered_fps": round(cameras * p.sample_fps, 3),
        "scored_fps": round(len(latencies) / p.window_s, 3),
        **{f"p{q}_ms": _r(percentile(latencies, q)) for q in (50, 90, 95, 99)},
        "max_ms": _r(max(latencies) if latencies else None),
        "n": len(latencies),
        "dropped": int(dropped),
        "rate_reduced": "RATE_REDUCED" in warnings,
        "ask_calls": len(ask_stats.latencies_ms),
        "ask_per_s": round(len(ask_stats.latencies_ms) / p.window_s, 3),
        "ask_p50_ms": _r(percentile(ask_stats.latencies_ms, 50)),
        "ask_p99_ms": _r(percentile(ask_stats.latencies_ms, 99)),
        "errors": len(errors) + len(ask_stats.errors),
        "error_samples": (errors + ask_stats.errors)[:3],
        "warnings": sorted(warnings),
        "skipped": False,
    }
    row["within_budget"] = row["p99_ms"] is not None and row["p99_ms"] <= p.p99_budget_ms
    row["sustained"] = bool(
        row["within_budget"] and not row["dropped"] and not row["rate_reduced"] and not row["errors"]
    )
    return row


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


# -- the matrix ------------------------------------------------------------------------------------------------


def knee(rows: Sequence[dict[str, Any]]) -> int:
    """The most cameras (cells without Ask callers) such that it and every smaller measured load were sustained:
    p99 within budget and nothing dropped or cut. 0 when even the smallest load was not."""
    best = 0
    for row in sorted((r for r in rows if r["asks"] == 0 and not r["skipped"]), key=lambda r: r["cameras"]):
        if not row["sustained"]:
            break
        best = row["cameras"]
    return best


def clips_for(p: LoadParams, seconds: float) -> list[list[EncodedUnit]]:
    """Scripted scenes (85 % still by default, as pet cameras mostly are), encoded before anything is timed."""
    from bench.load import encode_clip

    return [
        encode_clip(
            seed,
            width=p.width,
            height=p.height,
            fps=p.fps,
            seconds=seconds,
            still_fraction=p.still_fraction,
            every_behavior=False,
        )
        for seed in range(1, p.clip_seeds + 1)
    ]


def ask_jpeg(width: int, height: int) -> bytes:
    """One rendered scene as JPEG: what an `Ask` caller sends."""
    from PIL import Image

    from simulators.scenes import SceneRenderer
    from simulators.timeline import Timeline

    timeline = Timeline.scripted(9, duration_s=60.0)
    rgb = SceneRenderer(9, width, height).render(5.0, timeline.state_at(5.0))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def sweep(
    target: str,
    p: LoadParams,
    clips: Sequence[Sequence[EncodedUnit]],
    jpeg: bytes,
    metrics_url: str | None,
    progress: Any,
    tag: str = "lt",
    asks: Sequence[int] | None = None,
    stop_unsustained: bool = False,
) -> list[dict[str, Any]]:
    """Every (cameras, asks) cell against one running server, lightest first; past stop_factor x budget (or, with
    `stop_unsustained`, after the first cell not sustained) the heavier cells of this Ask level are skipped."""
    rows = []
    levels = asks if asks is not None else p.asks
    for a in levels:
        stopped = False
        for cams in [c for c, level in p.cells() if level == a]:
            if stopped:
                rows.append({"cameras": cams, "asks": a, "skipped": True, "sustained": False, "within_budget": False})
            else:
                row = asyncio.run(run_cell(target, clips, cams, a, p, metrics_url, jpeg, tag=f"{tag}{a}"))
                rows.append(row)
                p99 = row["p99_ms"]
                stopped = p99 is None or p99 > p.stop_factor * p.p99_budget_ms
                stopped = stopped or (stop_unsustained and not row["sustained"])
                progress.set_postfix_str(f"{cams} cameras, {a} askers: p99 {p99} ms")
            progress.update(1)
    return rows


def search(
    target: str,
    p: LoadParams,
    clips: Sequence[Sequence[EncodedUnit]],
    jpeg: bytes,
    metrics_url: str | None,
    progress: Any,
    tag: str = "lt",
    resolution: float = 0.15,
) -> list[dict[str, Any]]:
    """The knee by search instead of a fixed list: double the cameras from p.cameras[0] until a cell is not
    sustained (or p.cameras[-1] is reached), then bisect between the last sustained and the first failing count
    until the gap is within `resolution` of the knee. No Ask callers. Rows sorted by cameras."""
    rows: dict[int, dict[str, Any]] = {}

    def measure(cams: int) -> bool:
        row = asyncio.run(run_cell(target, clips, cams, 0, p, metrics_url, jpeg, tag=f"{tag}{len(rows)}"))
        rows[cams] = row
        progress.set_postfix_str(f"{cams} cameras: p99 {row['p99_ms']} ms, sustained {row['sustained']}")
        progress.update(1)
        return bool(row["sustained"])

    knee_search(measure, p.cameras[0], p.cameras[-1], resolution)
    return [rows[c] for c in sorted(rows)]


def knee_search(sustained: Callable[[int], bool], start: int, limit: int, resolution: float) -> int:
    """Double from `start` while `sustained(n)`, up to `limit`; then bisect between the last sustained and the
    first failing count until they are within `resolution` x the former (at least 1) apart. Returns the last
    sustained count (0: not even `start`)."""
    low, high, n = 0, None, start
    while n <= limit:
        if not sustained(n):
            high = n
            break
        low, n = n, n * 2
    while high is not None and high - low > max(1, round(resolution * max(low, 1))):
        mid = (low + high) // 2
        if sustained(mid):
            low = mid
        else:
            high = mid
    return low


def run_loadtest(
    p: LoadParams,
    out: Path,
    target: str | None = None,
    target_metrics: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole matrix; writes loadtest.csv, loadtest.json and loadtest.png into `out`."""
    from simulators.fleet import server_process

    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    settings = [Setting(extra=p.extra_serve_args)] if target else p.settings()
    seconds = p.warmup_s + p.window_s + 1.0 / max(p.sample_fps, 1e-3) + 1.0
    log(f"encoding {p.clip_seeds} scripted clips of {seconds:.0f} s ({p.width}x{p.height}, {p.fps:g} fps)")
    clips = clips_for(p, seconds)
    jpeg = ask_jpeg(p.width, p.height)
    result: dict[str, Any] = {"machine": machine_info(), "params": _jsonable(asdict(p)), "settings": []}
    progress = bar(total=len(p.cells()) * len(settings), desc="loadtest", unit="cell")
    rows: list[dict[str, Any]] = []
    for setting in settings:
        log(f"setting {setting.label}")
        if target:
            setting_rows = sweep(target, p, clips, jpeg, target_metrics, progress)
        else:
            port = free_port()
            args = ["--model", p.model, "--metrics-port", str(port), *setting.serve_args()]
            with server_process(args, log_path=str(out / f"server-{_slug(setting.label)}.log"), timeout_s=300) as t:
                setting_rows = sweep(t, p, clips, jpeg, f"http://127.0.0.1:{port}/metrics", progress)
        for row in setting_rows:
            row.update(setting=setting.label, threads=setting.threads, max_batch=setting.max_batch)
        rows += setting_rows
        result["settings"].append({"label": setting.label, **_jsonable(asdict(setting)), "knee": knee(setting_rows)})
    progress.close()
    best = max(result["settings"], key=lambda s: s["knee"])
    result["cells"] = rows
    result["p99_budget_ms"] = p.p99_budget_ms
    result["knee"] = {
        "cameras": best["knee"],
        "setting": best["label"],
        "per_setting": {s["label"]: s["knee"] for s in result["settings"]},
        "rule": "most cameras (no Ask callers) whose p99 frame->event stays within the budget with no frame "
        "dropped and no rate cut, every lighter load passing too",
    }
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    write_outputs(result, out)
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace("=", "")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def write_outputs(result: dict[str, Any], out: Path) -> None:
    with open(out / "loadtest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in result["cells"]:
            writer.writerow(row)
    (out / "loadtest.json").write_text(json.dumps(result, indent=2, default=str))
    from bench.loadchart import plot

    plot(result, out / "loadtest.png")


def with_overrides(p: LoadParams, **kw: Any) -> LoadParams:
    return replace(p, **{k: v for k, v in kw.items() if v is not None})
