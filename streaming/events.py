"""Event lifecycle per (camera, behavior): turns noisy per-frame p_yes into STARTED/ENDED episodes."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from streaming.frames import Event


@dataclass(frozen=True)
class EventRule:
    """When an episode starts and ends. Every field has a default; validated on creation."""

    high: float = 0.6  # a sample is positive when p_yes >= high
    low: float = 0.4  # a sample is negative when p_yes < low (between: neither)
    start_k: int = 2  # STARTED after start_k positive samples ...
    start_n: int = 3  # ... among the last start_n samples
    end_m: int = 2  # ENDED after end_m consecutive negative samples
    min_duration_s: float = 0.0  # an episode lasts at least this long before it may end
    cooldown_s: float = 0.0  # after ENDED, no new STARTED for this long

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"EventRule needs 0 <= low <= high <= 1, got low={self.low} high={self.high}")
        if not 1 <= self.start_k <= self.start_n:
            raise ValueError(f"EventRule needs 1 <= start_k <= start_n, got {self.start_k}/{self.start_n}")
        if self.end_m < 1:
            raise ValueError(f"EventRule.end_m must be >= 1, got {self.end_m}")
        if self.min_duration_s < 0 or self.cooldown_s < 0:
            raise ValueError("EventRule.min_duration_s and cooldown_s must be >= 0")


#: a sample up to this much older than the newest one seen is video sent again (a camera resuming at a keyframe
#: before its resume point); further back, the camera's clock restarted (a reboot) and it counts
RESENT_WINDOW_US = 60_000_000


def new_event_id(behavior: str) -> str:
    """A fresh episode id: random, so ids never repeat across servers, restarts or a lost data folder."""
    return f"{behavior}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class EpisodeState:
    """What a tracker must remember across streams of one device (a reconnect, a server restart).

    Kept in the event store per (device, behavior): an open episode keeps its id, start and confidence, so the
    next stream of the device continues it instead of starting a second one."""

    active_id: str | None = None  # the open episode's event id; None when no episode is open
    start_pts_us: int = 0
    positive_sum: float = 0.0
    positive_count: int = 0
    negatives: int = 0  # consecutive negative samples of the open episode
    recent: tuple[bool, ...] = ()  # positive flags of the last start_n samples
    last_end_pts_us: int | None = None  # for the cooldown
    last_pts_us: int | None = None  # the newest sample seen (None: none yet)
    last_frame_seq: int = 0

    @property
    def active(self) -> bool:
        return self.active_id is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "recent" in known:
            known["recent"] = tuple(bool(x) for x in known["recent"])
        return cls(**known)


class BehaviorTracker:
    """State machine for one (camera, behavior); feed it every scored frame in pts order.

    `state` continues where an earlier stream of the device left off (see EpisodeState)."""

    def __init__(
        self,
        device_id: str,
        behavior: str,
        rule: EventRule,
        state: EpisodeState | None = None,
        *,
        new_id: Callable[[str], str] = new_event_id,
    ) -> None:
        self.device_id = device_id
        self.behavior = behavior
        self.rule = rule
        self._new_id = new_id
        s = state or EpisodeState()
        self._recent: deque[bool] = deque(s.recent, maxlen=rule.start_n)
        self._negatives = s.negatives
        self._active_id: str | None = s.active_id
        self._start_pts = s.start_pts_us
        self._positive_sum = s.positive_sum
        self._positive_count = s.positive_count
        self._last_end_pts: int | None = s.last_end_pts_us
        self._last: tuple[int | None, int] = (s.last_pts_us, s.last_frame_seq)

    @property
    def active(self) -> bool:
        return self._active_id is not None

    def snapshot(self) -> EpisodeState:
        """The state to keep for the device's next stream."""
        return EpisodeState(
            active_id=self._active_id,
            start_pts_us=self._start_pts,
            positive_sum=self._positive_sum,
            positive_count=self._positive_count,
            negatives=self._negatives,
            recent=tuple(self._recent),
            last_end_pts_us=self._last_end_pts,
            last_pts_us=self._last[0],
            last_frame_seq=self._last[1],
        )

    def update(self, p_yes: float, pts_us: int, frame_seq: int) -> Event | None:
        rule = self.rule
        last_pts = self._last[0]
        if last_pts is not None and 0 <= last_pts - pts_us < RESENT_WINDOW_US:
            return None  # video the camera sent again after a restart (it resumes from a keyframe): seen already
        positive = p_yes >= rule.high
        self._recent.append(positive)
        self._last = (pts_us, frame_seq)
        if self._active_id is None:
            # a camera clock that went backwards (a reboot between streams) does not keep it cooling forever
            since_end = None if self._last_end_pts is None else pts_us - self._last_end_pts
            cooling = since_end is not None and 0 <= since_end < rule.cooldown_s * 1e6
            if positive and not cooling and sum(self._recent) >= rule.start_k:
                self._active_id = self._new_id(self.behavior)
                self._start_pts = pts_us
                self._positive_sum, self._positive_count, self._negatives = p_yes, 1, 0
                return self._event("STARTED", p_yes, pts_us, frame_seq)
            return None
        if positive:
            self._positive_sum += p_yes
            self._positive_count += 1
        self._negatives = self._negatives + 1 if p_yes < rule.low else 0
        lasted = pts_us - self._start_pts
        long_enough = lasted >= rule.min_duration_s * 1e6 or lasted < 0  # < 0: the camera's clock restarted
        if self._negatives >= rule.end_m and long_enough:
            return self.end(pts_us, frame_seq)
        return None

    def end(self, pts_us: int, frame_seq: int) -> Event | None:
        """Close the open episode (also used when the stream ends or the behavior is unwatched)."""
        if self._active_id is None:
            return None
        event = self._event("ENDED", self._positive_sum / max(self._positive_count, 1), pts_us, frame_seq)
        self._active_id = None
        self._last_end_pts = pts_us
        self._negatives = 0
        self._recent.clear()
        return event

    def _event(self, state: str, confidence: float, pts_us: int, frame_seq: int) -> Event:
        assert self._active_id is not None
        return Event(
            device_id=self.device_id,
            behavior=self.behavior,
            state=state,  # type: ignore[arg-type]
            confidence=float(confidence),
            pts_us=pts_us,
            frame_seq=frame_seq,
            event_id=self._active_id,
            start_pts_us=self._start_pts,
            end_pts_us=pts_us if state == "ENDED" else 0,
        )
