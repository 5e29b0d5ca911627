"""Event lifecycle per (camera, behavior): turns noisy per-frame p_yes into STARTED/ENDED episodes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

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


class BehaviorTracker:
    """State machine for one (camera, behavior); feed it every scored frame in pts order."""

    def __init__(self, device_id: str, behavior: str, rule: EventRule, id_prefix: str) -> None:
        self.device_id = device_id
        self.behavior = behavior
        self.rule = rule
        self._id_prefix = id_prefix
        self._recent: deque[bool] = deque(maxlen=rule.start_n)
        self._negatives = 0
        self._active_id: str | None = None
        self._start_pts = 0
        self._positive_sum = 0.0
        self._positive_count = 0
        self._last_end_pts: int | None = None
        self._episodes = 0

    @property
    def active(self) -> bool:
        return self._active_id is not None

    def update(self, p_yes: float, pts_us: int, frame_seq: int) -> Event | None:
        rule = self.rule
        positive = p_yes >= rule.high
        self._recent.append(positive)
        if self._active_id is None:
            cooling = self._last_end_pts is not None and pts_us - self._last_end_pts < rule.cooldown_s * 1e6
            if positive and not cooling and sum(self._recent) >= rule.start_k:
                self._episodes += 1
                self._active_id = f"{self._id_prefix}-{self.behavior}-{self._episodes}"
                self._start_pts = pts_us
                self._positive_sum, self._positive_count, self._negatives = p_yes, 1, 0
                return self._event("STARTED", p_yes, pts_us, frame_seq)
            return None
        if positive:
            self._positive_sum += p_yes
            self._positive_count += 1
        self._negatives = self._negatives + 1 if p_yes < rule.low else 0
        long_enough = pts_us - self._start_pts >= rule.min_duration_s * 1e6
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
