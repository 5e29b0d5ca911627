"""Named OS threads for the server's roles (ps-decode, ps-model), and the model thread pool."""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor


def model_thread_start(cpus: tuple[int, ...] = ()) -> None:
    """A model thread: named ps-model, and pinned to `cpus` (threads it starts, e.g. torch's, inherit them)."""
    name_os_thread("ps-model")
    if cpus:
        os.sched_setaffinity(0, cpus)  # pid 0: this thread only (Linux)


def model_pool(threads: int = 1, cpus: tuple[int, ...] = ()) -> ThreadPoolExecutor:
    """The model threads: one batch at a time uses all cores of a local engine (a fresh pool replaces one stuck
    in a hung call)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="model", initializer=model_thread_start, initargs=(cpus,))


def name_os_thread(name: str) -> None:
    """Name the calling thread for the OS (top -H, /proc/*/task/*/comm): per-role CPU time can then be read."""
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME (Linux); elsewhere a no-op
    except (OSError, AttributeError):
        pass
