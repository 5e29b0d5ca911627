"""The durable event log: every behavior event is committed to SQLite (WAL) here before it is sent anywhere.

One writer thread owns the writing connection and commits whatever is queued in one transaction (group commit), so
the event loop only queues a write and later gets a future's result. A reader thread with its own connection
answers history queries, and the newest events are kept in memory for live subscribers. When the disk is full or
read-only the writer keeps the writes in a bounded backlog, reports it (`status()`), and retries until they land;
events still reach the camera meanwhile, and nothing dropped is uncounted.
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from streaming import store_sql as sql
from streaming.events import EpisodeState
from streaming.frames import Event
from streaming.store_sql import StoredEvent, SyncMode, Write, now_us

__all__ = ["EventStore", "StoreError", "StoreLocked", "StoreStatus", "StoredEvent", "now_us"]

log = logging.getLogger(__name__)
T = TypeVar("T")
DB_NAME = "events.db"
LOCK_NAME = "events.db.lock"
_MAX_GROUP = 1024  # most writes in one transaction


@dataclass(frozen=True)
class StoreStatus:
    """What health and logs report about the store."""

    writable: bool
    error: str | None  # the last write error while not writable
    backlog: int  # writes waiting for the store to take them again
    lost: int  # events given up because the backlog was full (counted, logged)
    last_cursor: int
    events_stored: int  # since start
    commits: int
    commit_ms_max: float


class StoreError(RuntimeError):
    """The event store cannot be opened at all (a start-up error, not a failing disk)."""


class StoreLocked(StoreError):
    """Another server holds this data folder."""


class EventStore:
    """The event log, episode states and sink cursors of one server, in `data_dir`/events.db."""

    def __init__(
        self,
        data_dir: str,
        *,
        sync: SyncMode = "full",
        retention_s: float = 30 * 86400.0,
        recent: int = 4096,
        max_backlog: int = 100_000,
        retry_s: float = 1.0,
        lock_wait_s: float = 30.0,
    ) -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"sync: {sync!r} is not one of ['normal', 'full']")
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, DB_NAME)
        self.sync: SyncMode = sync
        self.retention_s = retention_s
        self.max_backlog = max_backlog
        self.retry_s = retry_s
        self.lock_wait_s = lock_wait_s
        self._recent_max = recent
        self._recent: list[StoredEvent] = []  # newest committed events, cursor order (live subscribers read here)
        self._recent_cursors: list[int] = []
        self._queue: queue.SimpleQueue[Write] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._lock_fd: int | None = None
        self.last_cursor = 0
        # written by the writer thread, read anywhere (plain values: a stale read is harmless)
        self._writable = True
        self._error: str | None = None
        self._backlog = 0
        self.lost = 0
        self.events_stored = 0
        self.commits = 0
        self.commit_ms_max = 0.0
        self.commit_ms: list[float] = []  # the last 1024 transactions' wall time (what a write costs)
        self.on_health_change: Callable[[StoreStatus], None] | None = None  # called on the loop

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the folder and database, take the folder's lock (waiting for a draining predecessor).

        A folder that cannot be created is a configuration error (raised). A database that cannot be written
        (a read-only or full disk) is not: the server starts, reports it, keeps events in memory and retries."""
        self._loop = asyncio.get_running_loop()
        try:
            os.makedirs(self.data_dir, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"data_dir {self.data_dir!r} cannot be created: {exc.strerror}") from None
        await self._loop.run_in_executor(None, self._take_lock)
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._write_loop, args=(ready,), name="event-store", daemon=True)
        self._thread.start()
        await ready
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="event-store-read")
        try:
            top = await self._read(lambda c: c.execute("SELECT COALESCE(MAX(cursor), 0) FROM events").fetchone())
            self.last_cursor = int(top[0])
        except sqlite3.Error as exc:  # unreadable too: cursors continue from what commits report
            log.error("event store %s cannot be read (%s)", self.path, exc)
        state = "open" if self._writable else f"NOT WRITABLE ({self._error}); retrying"
        log.info(
            "event store %s %s (WAL, synchronous=%s), last cursor %d", self.path, state, self.sync, self.last_cursor
        )

    def _take_lock(self) -> None:
        path = os.path.join(self.data_dir, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            try:
                fd = os.open(path, os.O_RDONLY)  # a read-only disk: a lock still works on a read-only handle
            except OSError as exc:
                log.error("data_dir %s: no lock file (%s); another server could use the same folder", path, exc)
                return
        deadline = time.monotonic() + self.lock_wait_s
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreLocked(
                        f"data_dir {self.data_dir!r} is held by another petstream server (pid {holder}); "
                        "give each server its own data_dir"
                    ) from None
                if not warned:
                    log.warning("data_dir %s is held by pid %s (draining?); waiting for it", self.data_dir, holder)
                    warned = True
                time.sleep(0.05)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass  # read-only: the holder's pid is just not shown to a waiting server
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    async def close(self) -> None:
        """Commit what is queued, stop the threads and release the data folder."""
        if self._thread is None:
            return
        await self.flush()
        self._queue.put(Write("stop"))
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10)
        self._thread = None
        if self._reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
            self._reader.shutdown(wait=True)
        self._release_lock()

    def _close_reader(self) -> None:
        conn = getattr(self._reader_local, "conn", None)
        if conn is not None:
            conn.close()
            self._reader_local.conn = None

    # -- writing (called on the event loop) -----------------------------------------------------------------

    def append(
        self, event: Event, session_id: str, episode: tuple[str, EpisodeState] | None = None
    ) -> asyncio.Future[StoredEvent]:
        """Queue an event (and the state of its device's episode after it, in the same transaction).

        The future's result is the stored event with its cursor once committed. While the store cannot write, it
        is answered at once with cursor 0 (the event goes out to the camera anyway) and stored when the store
        takes writes again."""
        record = StoredEvent(0, event, session_id, now_us())
        episodes = {episode[0]: episode[1]} if episode is not None else {}
        return self._submit(Write("event", record=record, device_id=event.device_id, episodes=episodes))

    def save_episodes(self, device_id: str, states: Mapping[str, EpisodeState]) -> asyncio.Future[bool]:
        """Keep a device's episode states for its next stream; True once committed."""
        return self._submit(Write("episodes", device_id=device_id, episodes=dict(states)))

    def save_cursor(self, name: str, cursor: int) -> asyncio.Future[bool]:
        """Remember how far a sink has delivered."""
        return self._submit(Write("cursor", name=name, cursor=cursor))

    async def flush(self) -> bool:
        """Wait until everything queued before has been committed (False if the store is failing)."""
        return await self._submit(Write("barrier"))

    def _submit(self, op: Write) -> asyncio.Future[Any]:
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def resolve(value: Any) -> None:
            if not future.done():
                if isinstance(value, BaseException):
                    future.set_exception(value)
                else:
                    future.set_result(value)

        op.resolve = resolve
        if self._thread is None:
            resolve(RuntimeError("the event store is not open"))
        else:
            self._queue.put(op)
        return future

    # -- reading --------------------------------------------------------------------------------------------

    async def load_episodes(self, device_id: str) -> dict[str, EpisodeState]:
        """The episode states kept for a device, after every write queued before this call."""

        def load(conn: sqlite3.Connection) -> dict[str, EpisodeState]:
            rows = conn.execute("SELECT behavior, state FROM episodes WHERE device_id = ?", (device_id,))
            return {b: EpisodeState.from_dict(json.loads(s)) for b, s in rows}

        return await self._submit(Write("call", call=load))

    async def open_episodes(self) -> list[tuple[str, str, EpisodeState, int]]:
        """(device, behavior, state, updated_us) of every open episode (at start-up: those a restart left open)."""

        def load(conn: sqlite3.Connection) -> list[tuple[str, str, EpisodeState, int]]:
            rows = conn.execute("SELECT device_id, behavior, state, updated_us FROM episodes WHERE active = 1")
            return [(d, b, EpisodeState.from_dict(json.loads(s)), u) for d, b, s, u in rows]

        return await self._submit(Write("call", call=load))

    async def sink_cursor(self, name: str) -> int:
        query = "SELECT cursor FROM sink_cursors WHERE name = ?"
        row = await self._read(lambda c: c.execute(query, (name,)).fetchone())
        return int(row[0]) if row else 0

    async def read_after(
        self, cursor: int, devices: frozenset[str] | None, limit: int
    ) -> tuple[list[StoredEvent], int]:
        """Up to `limit` events after `cursor`, oldest first, of `devices` (None = all), and the cursor up to which
        the log was looked through (beyond the last event returned when other devices' events were skipped)."""
        recent = self._recent_cursors
        if recent and cursor >= recent[0] - 1:  # a live subscriber: answer from memory
            out: list[StoredEvent] = []
            scanned = self.last_cursor
            for record in self._recent[bisect.bisect_right(recent, cursor) :]:
                if devices is None or record.event.device_id in devices:
                    out.append(record)
                    if len(out) >= limit:
                        scanned = record.cursor
                        break
            return out, max(scanned, cursor)
        top = self.last_cursor  # everything up to here is committed, so the query below sees it
        records = await self.query(devices, after_cursor=cursor, limit=limit)
        scanned = records[-1].cursor if len(records) >= limit else top
        return records, max(scanned, cursor)

    async def query(
        self,
        devices: frozenset[str] | None,
        *,
        since_us: int = 0,
        until_us: int = 0,
        after_cursor: int = 0,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """History: events after `after_cursor` seen in [since_us, until_us) (0 = open), oldest first."""
        if devices is not None and not devices:
            return []
        statement, args = sql.query_sql(devices, since_us, until_us, after_cursor, limit)
        rows = await self._read(lambda c: c.execute(statement, args).fetchall())
        return [sql.record(row) for row in rows]

    async def wait_beyond(self, cursor: int, timeout: float | None = None) -> bool:
        """Wait for a commit of an event after `cursor`, a wake(), or the timeout; True if there is one."""
        if self.last_cursor <= cursor:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass
        return self.last_cursor > cursor

    def wake(self) -> None:
        """Wake everyone in wait_beyond() (a shutdown)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._reader is not None, "the event store is not open"

        def run() -> T:
            conn = getattr(self._reader_local, "conn", None)
            if conn is None:
                conn = self._reader_local.conn = sqlite3.connect(self.path, isolation_level=None)
                conn.execute("PRAGMA query_only = 1")
                conn.execute("PRAGMA busy_timeout = 5000")
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    def status(self) -> StoreStatus:
        return StoreStatus(
            writable=self._writable,
            error=self._error,
            backlog=self._backlog,
            lost=self.lost,
            last_cursor=self.last_cursor,
            events_stored=self.events_stored,
            commits=self.commits,
            commit_ms_max=round(self.commit_ms_max, 3),
        )

    # -- the writer thread ----------------------------------------------------------------------------------

    def _write_loop(self, ready: asyncio.Future[None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sql.connect(self.path, self.sync)
        except (sqlite3.Error, OSError) as exc:
            error = self._explain(exc)
            log.error("event store %s cannot be opened for writing (%s); events wait in memory", self.path, error)
            self._set_health(False, error, 0)
        self._call_soon(ready.set_result, None)
        backlog: list[Write] = []  # writes that did not commit, oldest first
        next_prune = time.monotonic() + 60.0
        while True:
            ops: list[Write] = []
            try:  # block for the first write (or, while failing, until the next retry), then take all queued
                ops.append(self._queue.get(timeout=None if self._writable else self.retry_s))
                while len(ops) < _MAX_GROUP:
                    ops.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            stop = any(op.kind == "stop" for op in ops)
            writes = backlog + [op for op in ops if op.kind in ("event", "episodes", "cursor")]
            stored: list[StoredEvent] = []
            answers: list[tuple[Write, Any]] = []
            if writes or not self._writable:  # while failing, a probe write tells when the disk takes writes again
                try:
                    if conn is None:
                        conn = sql.connect(self.path, self.sync)
                    stored, answers, elapsed_ms = sql.commit(conn, writes, probe=not self._writable)
                    self._count(stored, elapsed_ms)
                    if backlog or not self._writable:
                        log.warning("event store %s writable again: %d buffered writes stored", self.path, len(backlog))
                    backlog = []
                    self._set_health(True, None, 0)
                except (sqlite3.Error, OSError) as exc:
                    error = self._explain(exc)
                    sql.reset(conn)
                    conn = None
                    backlog = self._keep(writes)
                    answers = [(op, self._unstored(op)) for op in writes if not op.resolved]
                    for op, _ in answers:
                        op.resolved = True
                    if self._writable or self._error != error:
                        log.error(
                            "event store %s cannot write (%s): %d writes buffered, retrying every %.0f s; "
                            "events still reach the cameras",
                            self.path,
                            error,
                            len(backlog),
                            self.retry_s,
                        )
                    self._set_health(False, error, len(backlog))
            for op in ops:  # reads and barriers run after the writes queued before them
                if op.kind == "call" and op.call is not None:
                    try:
                        if conn is None:
                            conn = sql.connect(self.path, self.sync)
                        answers.append((op, op.call(conn)))
                    except (sqlite3.Error, OSError) as exc:
                        answers.append((op, RuntimeError(f"event store read failed: {exc}")))
                elif op.kind == "barrier":
                    answers.append((op, not backlog))
            if stored or answers:
                self._call_soon(self._committed, stored, answers)
            if stop:
                if conn is not None:
                    conn.close()
                return
            if conn is not None and self.retention_s > 0 and time.monotonic() >= next_prune and not backlog:
                next_prune = time.monotonic() + 600.0
                sql.prune(conn, self.retention_s)

    def _count(self, stored: list[StoredEvent], elapsed_ms: float) -> None:
        self.commits += 1
        self.commit_ms_max = max(self.commit_ms_max, elapsed_ms)
        self.commit_ms.append(elapsed_ms)
        if len(self.commit_ms) > 1024:
            del self.commit_ms[:512]
        self.events_stored += len(stored)

    def _explain(self, exc: BaseException) -> str:
        """The error, with what the filesystem says about it (SQLite's own words can be vague)."""
        try:
            fs = os.statvfs(self.data_dir)
        except OSError:
            return str(exc)
        if fs.f_flag & os.ST_RDONLY:
            return f"{exc}: the filesystem is read-only"
        free = fs.f_bavail * fs.f_frsize
        if free < 1 << 20:
            return f"{exc}: the disk is full ({free} bytes free)"
        return str(exc)

    def _keep(self, writes: list[Write]) -> list[Write]:
        """The backlog after a failed commit: bounded; the oldest events beyond it are given up and counted."""
        events = sum(op.kind == "event" for op in writes)
        excess = events - self.max_backlog
        if excess <= 0:
            return writes
        kept: list[Write] = []
        for op in writes:
            if op.kind == "event" and excess > 0:
                excess -= 1
                self.lost += 1
                continue
            kept.append(op)
        log.error("event store backlog full (%d events): %d events lost so far", self.max_backlog, self.lost)
        return kept

    @staticmethod
    def _unstored(op: Write) -> Any:
        if op.kind == "event":
            return op.record  # cursor 0: sent to the camera now, stored once the store takes writes again
        return False

    def _set_health(self, writable: bool, error: str | None, backlog: int) -> None:
        changed = writable != self._writable
        self._writable, self._error, self._backlog = writable, error, backlog
        if changed and self.on_health_change is not None:
            self._call_soon(self.on_health_change, self.status())

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    # -- back on the event loop -----------------------------------------------------------------------------

    def _committed(self, stored: list[StoredEvent], answers: list[tuple[Write, Any]]) -> None:
        if stored:
            self._recent.extend(stored)
            self._recent_cursors.extend(r.cursor for r in stored)
            if len(self._recent) > 2 * self._recent_max:
                del self._recent[: -self._recent_max]
                del self._recent_cursors[: -self._recent_max]
            self.last_cursor = max(self.last_cursor, stored[-1].cursor)
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
        for op, value in answers:
            if op.resolve is not None:
                op.resolve(value)
