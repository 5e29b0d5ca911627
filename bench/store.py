"""What an event write costs: the store's group-committing writer thread vs committing on the event loop itself.

Both write the same events to SQLite (WAL) in one run, with synchronous=FULL (power-loss safe, the default) and
NORMAL. Reported: the loop's own time per append, append-to-durable latency one at a time (median, p99), a burst's
throughput, and the event loop's longest stall while writing (a ticker every 1 ms measures it)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from typing import Any

from bench.load import machine_info, percentile
from streaming.events import EpisodeState
from streaming.frames import Event
from streaming.store import EventStore


def _event(i: int) -> Event:
    return Event(f"cam-{i % 20}", "barking", "STARTED", 0.9, i, i, f"barking-{i:012d}", i)


class _Ticker:
    """The event loop's responsiveness: the longest gap between 1 ms ticks while it runs."""

    def __init__(self) -> None:
        self.max_gap_ms = 0.0
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        self._last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.max_gap_ms = max(self.max_gap_ms, (now - self._last) * 1e3)
            self._last = now

    def __enter__(self) -> _Ticker:
        self._last = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        # a loop blocked until the end never ticked: the gap up to now counts too
        self.max_gap_ms = max(self.max_gap_ms, (time.perf_counter() - self._last) * 1e3)


async def _store_side(data_dir: str, sync: str, one_by_one: int, burst: int) -> dict[str, Any]:
    store = EventStore(data_dir, sync=sync)  # type: ignore[arg-type]
    await store.open()
    state = ("barking", EpisodeState(active_id="x"))
    loop_us, latency_ms = [], []
    with _Ticker() as lag_single:
        for i in range(one_by_one):
            t0 = time.perf_counter()
            future = store.append(_event(i), "bench", state)
            loop_us.append((time.perf_counter() - t0) * 1e6)
            await future
            latency_ms.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    with _Ticker() as lag_burst:
        await asyncio.gather(*(store.append(_event(one_by_one + i), "bench", state) for i in range(burst)))
    burst_s = time.perf_counter() - t0
    commits = store.commits
    await store.close()
    return {
        "append_loop_us_median": round(statistics.median(loop_us), 2),
        "durable_ms_median": round(statistics.median(latency_ms), 3),
        "durable_ms_p99": round(percentile(latency_ms, 99) or 0, 3),
        "burst_events_per_s": round(burst / burst_s),
        "commits": commits,
        "loop_max_stall_ms_one_by_one": round(lag_single.max_gap_ms, 2),
        "loop_max_stall_ms_burst": round(lag_burst.max_gap_ms, 2),
    }


async def _on_loop(data_dir: str, sync: str, one_by_one: int, burst: int) -> dict[str, Any]:
    """Baseline: one INSERT + COMMIT per event on the loop thread (what a naive store would do)."""
    os.makedirs(data_dir, exist_ok=True)
    conn = sqlite3.connect(os.path.join(data_dir, "naive.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute("CREATE TABLE events(cursor INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT, state TEXT, body TEXT)")

    def write(i: int) -> None:
        e = _event(i)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events(event_id, state, body) VALUES (?,?,?)", (e.event_id, e.state, repr(e)))
        conn.execute("COMMIT")

    latency_ms = []
    with _Ticker() as lag_single:
        for i in range(one_by_one):
            t0 = time.perf_counter()
            write(i)
            latency_ms.append((time.perf_counter() - t0) * 1e3)
            await asyncio.sleep(0)
    t0 = time.perf_counter()
    with _Ticker() as lag_burst:
        for i in range(burst):
            write(one_by_one + i)
        await asyncio.sleep(0)
    burst_s = time.perf_counter() - t0
    conn.close()
    return {
        "append_loop_us_median": round(statistics.median(latency_ms) * 1e3, 2),  # all of it on the loop
        "durable_ms_median": round(statistics.median(latency_ms), 3),
        "durable_ms_p99": round(percentile(latency_ms, 99) or 0, 3),
        "burst_events_per_s": round(burst / burst_s),
        "commits": one_by_one + burst,
        "loop_max_stall_ms_one_by_one": round(lag_single.max_gap_ms, 2),
        "loop_max_stall_ms_burst": round(lag_burst.max_gap_ms, 2),
    }


def main(json_out: str | None, one_by_one: int = 300, burst: int = 2000) -> int:
    results: dict[str, Any] = {"machine": machine_info(), "one_by_one": one_by_one, "burst": burst}
    with tempfile.TemporaryDirectory(prefix="petstream-store-bench-", dir=os.environ.get("BENCH_DIR")) as work:
        for sync in ("full", "normal"):
            store = asyncio.run(_store_side(os.path.join(work, f"store-{sync}"), sync, one_by_one, burst))
            naive = asyncio.run(_on_loop(os.path.join(work, f"naive-{sync}"), sync, one_by_one, burst))
            results[sync] = {
                "store (writer thread, group commit)": store,
                "baseline (commit on the loop)": naive,
                "burst_speedup": round(store["burst_events_per_s"] / max(naive["burst_events_per_s"], 1), 2),
                "loop_stall_ratio_burst": round(
                    naive["loop_max_stall_ms_burst"] / max(store["loop_max_stall_ms_burst"], 0.01), 1
                ),
            }
    print(json.dumps(results, indent=1))
    if json_out:
        os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
        with open(json_out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {json_out}")
    return 0
