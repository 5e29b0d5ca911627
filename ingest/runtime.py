"""The server process's own figures (RSS, open file descriptors, threads, asyncio tasks), logged as one JSON line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)
PREFIX = "runtime "  # the log line the soak reads: "runtime {json}"


def process_stats(pid: int | str = "self") -> dict[str, int]:
    """RSS and OS thread count (all threads, grpc's own included) from /proc, and the open file descriptors."""
    stats = {"rss_bytes": 0, "threads": 0, "open_fds": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    stats["rss_bytes"] = int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    stats["threads"] = int(line.split()[1])
        stats["open_fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):  # not Linux, or the process is gone
        pass
    return stats


def runtime_stats(extra: Callable[[], dict[str, object]] | None = None) -> dict[str, object]:
    stats: dict[str, object] = dict(process_stats())
    stats["asyncio_tasks"] = len(asyncio.all_tasks())
    if extra is not None:
        stats.update(extra())
    return stats


async def log_every(interval_s: float, extra: Callable[[], dict[str, object]] | None = None) -> None:
    """Log the runtime line every `interval_s` (stats_interval_s): a slow leak shows in any log collector."""
    while True:
        log.info("%s%s", PREFIX, json.dumps(runtime_stats(extra), separators=(",", ":")))
        await asyncio.sleep(interval_s)
