"""The event store's SQL: the schema, a connection in WAL mode, one transaction's writes, rows as typed values.

Called only from the store's threads (streaming/store.py); nothing here touches the event loop.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from streaming.events import EpisodeState
from streaming.frames import Event

log = logging.getLogger(__name__)
SyncMode = Literal["normal", "full"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
  cursor INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL, state TEXT NOT NULL, device_id TEXT NOT NULL, behavior TEXT NOT NULL,
  confidence REAL NOT NULL, pts_us INTEGER NOT NULL, frame_seq INTEGER NOT NULL,
  start_pts_us INTEGER NOT NULL, end_pts_us INTEGER NOT NULL, session_id TEXT NOT NULL, time_us INTEGER NOT NULL,
  UNIQUE(event_id, state));
CREATE INDEX IF NOT EXISTS events_device ON events(device_id, cursor);
CREATE INDEX IF NOT EXISTS events_time ON events(time_us);
CREATE TABLE IF NOT EXISTS episodes(
  device_id TEXT NOT NULL, behavior TEXT NOT NULL, state TEXT NOT NULL, active INTEGER NOT NULL,
  updated_us INTEGER NOT NULL, PRIMARY KEY(device_id, behavior));
CREATE TABLE IF NOT EXISTS sink_cursors(name TEXT PRIMARY KEY, cursor INTEGER NOT NULL, updated_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS probe(id INTEGER PRIMARY KEY, at_us INTEGER NOT NULL);
"""
COLUMNS = (
    "cursor, event_id, state, device_id, behavior, confidence, pts_us, frame_seq, start_pts_us, end_pts_us, "
    "session_id, time_us"
)


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log holds it. `cursor` is its position: strictly increasing per store (0 = not stored)."""

    cursor: int
    event: Event
    session_id: str  # the camera stream that produced it; "" when the server ended an abandoned episode itself
    time_us: int  # Unix wall clock (microseconds) when the server saw the transition

    @property
    def key(self) -> str:
        """What a consumer de-duplicates on: each episode id has one STARTED and one ENDED."""
        return f"{self.event.event_id}/{self.event.state}"


@dataclass
class Write:
    """One request to the writer thread; `resolve` runs on the event loop with its result."""

    kind: Literal["event", "episodes", "cursor", "call", "barrier", "stop"]
    resolve: Callable[[Any], None] | None = None
    record: StoredEvent | None = None
    device_id: str = ""
    episodes: Mapping[str, EpisodeState] = field(default_factory=dict)
    name: str = ""
    cursor: int = 0
    call: Callable[[sqlite3.Connection], Any] | None = None
    resolved: bool = False  # an event already answered (unstored) while the store was failing


def connect(path: str, sync: SyncMode) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode WAL refused (got {mode})")
        conn.executescript(SCHEMA)  # IF NOT EXISTS: nothing is written once the tables are there
        conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    except BaseException:
        conn.close()
        raise
    return conn


def commit(
    conn: sqlite3.Connection, writes: list[Write], *, probe: bool = False
) -> tuple[list[StoredEvent], list[tuple[Write, Any]], float]:
    """One transaction: (events newly stored, answers for the writes, milliseconds it took)."""
    started = time.perf_counter()
    stored: list[StoredEvent] = []
    answers: list[tuple[Write, Any]] = []
    updated = now_us()
    conn.execute("BEGIN IMMEDIATE")
    try:
        if probe:  # a real write: an empty transaction would succeed on a full disk
            conn.execute("INSERT OR REPLACE INTO probe(id, at_us) VALUES (1, ?)", (updated,))
        for op in writes:
            if op.kind == "event" and op.record is not None:
                r, e = op.record, op.record.event
                cur = conn.execute(
                    "INSERT OR IGNORE INTO events(event_id, state, device_id, behavior, confidence, pts_us, "
                    "frame_seq, start_pts_us, end_pts_us, session_id, time_us) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        e.event_id,
                        e.state,
                        e.device_id,
                        e.behavior,
                        e.confidence,
                        e.pts_us,
                        e.frame_seq,
                        e.start_pts_us,
                        e.end_pts_us,
                        r.session_id,
                        r.time_us,
                    ),
                )
                # a repeated (event_id, state) is not stored twice: its answer keeps cursor 0
                result = StoredEvent(cur.lastrowid or 0, e, r.session_id, r.time_us) if cur.rowcount == 1 else r
                if cur.rowcount == 1:
                    stored.append(result)
                save_episodes(conn, op.device_id, op.episodes, updated)
                if not op.resolved:
                    answers.append((op, result))
            elif op.kind == "episodes":
                save_episodes(conn, op.device_id, op.episodes, updated)
                answers.append((op, True))
            elif op.kind == "cursor":
                conn.execute(
                    "INSERT INTO sink_cursors(name, cursor, updated_us) VALUES (?,?,?) ON CONFLICT(name) "
                    "DO UPDATE SET cursor = excluded.cursor, updated_us = excluded.updated_us",
                    (op.name, op.cursor, updated),
                )
                answers.append((op, True))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return stored, answers, (time.perf_counter() - started) * 1e3


def save_episodes(
    conn: sqlite3.Connection, device_id: str, states: Mapping[str, EpisodeState], updated_us: int
) -> None:
    for behavior, state in states.items():
        conn.execute(
            "INSERT INTO episodes(device_id, behavior, state, active, updated_us) VALUES (?,?,?,?,?) "
            "ON CONFLICT(device_id, behavior) DO UPDATE SET state = excluded.state, active = excluded.active, "
            "updated_us = excluded.updated_us",
            (device_id, behavior, json.dumps(state.to_dict()), int(state.active), updated_us),
        )


def reset(conn: sqlite3.Connection | None) -> None:
    """After a failed write the connection is reopened on the next try (a remounted disk needs a new handle)."""
    if conn is not None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        conn.close()
    return None


def prune(conn: sqlite3.Connection, retention_s: float) -> None:
    try:
        cutoff = now_us() - int(retention_s * 1e6)
        deleted = conn.execute("DELETE FROM events WHERE time_us < ?", (cutoff,)).rowcount
        if deleted:
            log.info("event store: %d events older than the retention removed", deleted)
    except sqlite3.Error as exc:
        log.warning("event store: pruning old events failed: %s", exc)


def record(row: tuple[Any, ...]) -> StoredEvent:
    cursor, event_id, state, device_id, behavior, conf, pts, seq, start, end, session_id, time_us = row
    event = Event(device_id, behavior, state, conf, pts, seq, event_id, start, end)
    return StoredEvent(cursor, event, session_id, time_us)


def query_sql(
    devices: frozenset[str] | None, since_us: int, until_us: int, after_cursor: int, limit: int
) -> tuple[str, list[Any]]:
    """History: events after `after_cursor` of `devices` (None = all) seen in [since_us, until_us) (0 = open)."""
    sql = f"SELECT {COLUMNS} FROM events WHERE cursor > ?"
    args: list[Any] = [after_cursor]
    if devices is not None:
        sql += f" AND device_id IN ({','.join('?' * len(devices))})"
        args += sorted(devices)
    if since_us:
        sql += " AND time_us >= ?"
        args.append(since_us)
    if until_us:
        sql += " AND time_us < ?"
        args.append(until_us)
    sql += " ORDER BY cursor LIMIT ?"
    args.append(limit)
    return sql, args
