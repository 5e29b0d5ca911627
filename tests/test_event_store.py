"""The event store on real SQLite files: cursors, history, episode states, one server per folder, and a disk that
fills up or is read-only (real small tmpfs mounts; skipped only where this machine cannot mount)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from streaming.events import BehaviorTracker, EpisodeState, EventRule
from streaming.frames import Event
from streaming.store import EventStore, StoreLocked


def event(device: str, n: int, state: str = "STARTED", behavior: str = "barking") -> Event:
    return Event(device, behavior, state, 0.9, n * 1_000_000, n, f"{behavior}-{device}-{n}", n * 1_000_000)  # type: ignore[arg-type]


@contextlib.contextmanager
def small_disk(size: str = "1m") -> Iterator[str]:
    """A real filesystem of `size` (tmpfs) that tests can fill or make read-only."""
    path = tempfile.mkdtemp(prefix="petstream-disk-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True)
    if done.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


def fill(path: str) -> str:
    """Write a file until the filesystem is full; returns its path (delete it to free the space)."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_cursors_history_duplicates_and_episode_states_survive_a_reopen(tmp_path):
    async def scenario():  # noqa: ANN202
        store = EventStore(str(tmp_path))
        await store.open()
        first = [
            await store.append(event("cam-a", i), "s1", ("barking", EpisodeState(active_id=f"x{i}"))) for i in range(3)
        ]
        others = await asyncio.gather(*(store.append(event("cam-b", i), "s2") for i in range(50)))  # one group commit
        again = await store.append(event("cam-a", 0), "s9")  # the same (event_id, state): not stored twice
        await store.save_cursor("sink-x", first[-1].cursor)
        live, scanned = await store.read_after(first[0].cursor, frozenset({"cam-a"}), 10)
        await store.close()
        reopened = EventStore(str(tmp_path))
        await reopened.open()
        history, _ = await reopened.read_after(0, None, 1000)  # from the database now, not memory
        page = await reopened.query(frozenset({"cam-b"}), after_cursor=others[9].cursor, limit=5)
        episodes = await reopened.load_episodes("cam-a")
        cursor = await reopened.sink_cursor("sink-x")
        open_ = await reopened.open_episodes()
        await reopened.close()
        return first, others, again, live, scanned, history, page, episodes, cursor, open_, reopened

    first, others, again, live, scanned, history, page, episodes, cursor, open_, reopened = asyncio.run(scenario())
    cursors = [r.cursor for r in first + others]
    assert cursors == sorted(cursors) and len(set(cursors)) == 53 and cursors[0] >= 1
    assert again.cursor == 0, "a repeated key is not stored again"
    assert [r.event.event_id for r in live] == [first[1].event.event_id, first[2].event.event_id]
    assert scanned == others[-1].cursor, "the scan went past the other device's events"
    assert len(history) == 53 and reopened.last_cursor == cursors[-1]
    assert [r.cursor for r in page] == [r.cursor for r in others[10:15]]
    assert episodes == {"barking": EpisodeState(active_id="x2")}, "the state written with the last event"
    assert cursor == first[-1].cursor
    assert [(d, b, s.active_id) for d, b, s, _ in open_] == [("cam-a", "barking", "x2")]


def test_a_second_store_on_the_same_folder_is_refused_naming_the_holder(tmp_path):
    async def scenario():  # noqa: ANN202
        holder = EventStore(str(tmp_path))
        await holder.open()
        try:
            with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
                await EventStore(str(tmp_path), lock_wait_s=0.2).open()
        finally:
            await holder.close()
        successor = EventStore(str(tmp_path), lock_wait_s=0.2)  # once released, the next one gets it
        await successor.open()
        await successor.close()

    asyncio.run(scenario())


def test_a_tracker_continues_its_episode_from_a_snapshot_and_ignores_resent_video():
    rule = EventRule(start_k=1, start_n=1, end_m=2)
    first = BehaviorTracker("cam", "barking", rule)
    started = first.update(0.9, 1_000_000, 0)
    assert started is not None and started.state == "STARTED"
    first.update(0.9, 2_000_000, 1)
    state = first.snapshot()
    second = BehaviorTracker("cam", "barking", rule, EpisodeState.from_dict(state.to_dict()))  # as the store keeps it
    assert second.active
    assert second.update(0.1, 1_500_000, 0) is None and second.update(0.1, 2_000_000, 1) is None, "resent: ignored"
    assert second.update(0.9, 3_000_000, 2) is None, "no second STARTED for the same episode"
    assert second.update(0.1, 4_000_000, 3) is None
    ended = second.update(0.1, 5_000_000, 4)
    assert ended is not None and ended.state == "ENDED" and ended.event_id == started.event_id
    assert ended.start_pts_us == 1_000_000 and ended.end_pts_us == 5_000_000
    # a camera whose clock restarted (a reboot: pts far behind) is not mistaken for resent video
    rebooted = BehaviorTracker("cam", "barking", rule, EpisodeState(last_pts_us=300_000_000))
    assert rebooted.update(0.9, 0, 0) is not None


def test_a_full_disk_keeps_events_in_memory_reports_it_and_stores_them_once_there_is_room():
    with small_disk("1m") as disk:

        async def scenario():  # noqa: ANN202
            changes = []
            store = EventStore(os.path.join(disk, "data"), retry_s=0.1)
            store.on_health_change = changes.append
            await store.open()
            ok = await store.append(event("cam", 0), "s")
            filler = fill(disk)
            during = [await store.append(event("cam", i), "s") for i in range(1, 40)]  # each answered at once
            status_full = store.status()
            os.remove(filler)
            for _ in range(100):
                if store.status().writable:
                    break
                await asyncio.sleep(0.05)
            await store.flush()
            stored, _ = await store.read_after(ok.cursor, None, 100)
            status_after = store.status()
            await store.close()
            return ok, during, status_full, stored, status_after, changes

        ok, during, full, stored, after, changes = asyncio.run(scenario())
    assert ok.cursor > 0
    assert not full.writable and "disk is full" in (full.error or ""), full
    assert full.backlog > 0 and any(r.cursor == 0 for r in during), "answered unstored, kept for later"
    assert after.writable and after.backlog == 0 and after.lost == 0
    assert [r.event.frame_seq for r in stored] == list(range(1, 40)), "every event stored, in order, once"
    assert [c.writable for c in changes] == [False, True], "health told once each way"


def test_a_read_only_disk_at_start_does_not_stop_the_store_and_it_recovers_when_writable():
    with small_disk("4m") as disk:
        data = os.path.join(disk, "data")

        async def create():  # noqa: ANN202
            store = EventStore(data)
            await store.open()
            await store.append(event("cam", 0), "s")
            await store.close()

        asyncio.run(create())
        subprocess.run(["mount", "-o", "remount,ro", disk], check=True)

        async def scenario():  # noqa: ANN202
            store = EventStore(data, retry_s=0.1)
            await store.open()  # does not raise: the server starts and reports it
            status_ro = store.status()
            answered = await store.append(event("cam", 1), "s")
            subprocess.run(["mount", "-o", "remount,rw", disk], check=True)
            for _ in range(100):
                if store.status().writable:
                    break
                await asyncio.sleep(0.05)
            await store.flush()
            history = await store.query(None, limit=10)
            await store.close()
            return status_ro, answered, history

        status_ro, answered, history = asyncio.run(scenario())
    assert not status_ro.writable and "read-only" in (status_ro.error or ""), status_ro
    assert answered.cursor == 0
    assert [r.event.frame_seq for r in history] == [0, 1], "the event from the read-only time is stored after"
