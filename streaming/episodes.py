"""Episodes across streams: which stream of a device owns its open episodes, and ending the abandoned ones.

A camera that reconnects (or comes back after a server restart) continues its open episodes: same event id, no
second STARTED. A camera that does not come back within `resume_s` gets its open episodes ended by the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from streaming.events import BehaviorTracker, EpisodeState, EventRule
from streaming.frames import Event
from streaming.store import EventStore

log = logging.getLogger(__name__)


@dataclass
class EpisodeLease:
    """A stream's hold on its device's episode states (from the store at open, back to it at close)."""

    device_id: str
    session_id: str
    states: dict[str, EpisodeState]  # behavior -> state the stream starts from
    _book: EpisodeBook

    @property
    def owner(self) -> bool:
        """False once a newer stream of the same device took over: this one no longer writes episode states."""
        return self._book.owner_of(self.device_id) == self.session_id

    def release(self, states: Mapping[str, EpisodeState]) -> None:
        self._book.release(self, states)


class EpisodeBook:
    """Owners of device episode states (the newest stream of a device), and open episodes of devices away."""

    def __init__(self, store: EventStore, *, resume_s: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.resume_s = resume_s
        self._clock = clock
        self._owners: dict[str, str] = {}  # device -> session id of its newest stream
        self._away: dict[tuple[str, str], tuple[EpisodeState, float]] = {}  # open, no stream: state, since (s)
        self.expired_total = 0

    async def start(self) -> None:
        """Episodes a previous run left open wait for their camera like those of a camera that just left."""
        for device, behavior, state, updated_us in await self._store.open_episodes():
            self._away[(device, behavior)] = (state, updated_us / 1e6)
        if self._away:
            log.info("%d open episodes from before wait up to %.0f s for their cameras", len(self._away), self.resume_s)

    def owner_of(self, device_id: str) -> str | None:
        return self._owners.get(device_id)

    async def checkout(self, device_id: str, session_id: str) -> EpisodeLease:
        """Make `session_id` the owner of the device's episodes and return the states to continue from."""
        self._owners[device_id] = session_id  # before awaiting: the sweeper must not end what is being resumed
        for key in [k for k in self._away if k[0] == device_id]:
            del self._away[key]
        try:
            states = await self._store.load_episodes(device_id)
        except RuntimeError as exc:  # a failing store must not keep a camera out: start afresh
            log.warning("camera %s: episode states not loaded (%s); starting without them", device_id, exc)
            states = {}
        return EpisodeLease(device_id, session_id, states, self)

    def release(self, lease: EpisodeLease, states: Mapping[str, EpisodeState]) -> None:
        """The stream ended: keep its states for the device's next stream (only the owner's count)."""
        if self._owners.get(lease.device_id) != lease.session_id:
            return
        del self._owners[lease.device_id]
        self._store.save_episodes(lease.device_id, states)
        now = self._clock()
        for behavior, state in states.items():
            if state.active:
                self._away[(lease.device_id, behavior)] = (state, now)

    def expire(self, rules: Callable[[str], EventRule]) -> list[tuple[Event, EpisodeState]]:
        """End open episodes whose camera stayed away longer than resume_s: (ENDED event, closed state) each."""
        cutoff = self._clock() - self.resume_s
        out: list[tuple[Event, EpisodeState]] = []
        for (device, behavior), (state, since) in list(self._away.items()):
            if since > cutoff or device in self._owners:
                continue
            del self._away[(device, behavior)]
            tracker = BehaviorTracker(device, behavior, rules(behavior), state)
            event = tracker.end(state.last_pts_us or 0, state.last_frame_seq)
            if event is not None:
                self.expired_total += 1
                out.append((event, tracker.snapshot()))
        return out

    @property
    def away(self) -> int:
        """Open episodes waiting for their camera."""
        return len(self._away)
