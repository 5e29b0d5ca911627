"""Overload governor: lowers every live camera's sampling rate when the model falls behind, restores it after."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GovernorPolicy:
    """When and how fast the sampling rate scale moves. Every field has a default; validated on creation."""

    # Overload: over a whole window, every batch started with its oldest frame queued longer than the configured
    # maximum batch wait plus the larger of overload_wait_ms and overload_service_factor batch service times.
    overload_wait_ms: float = 500.0
    overload_service_factor: float = 2.0
    window_s: float = 2.0  # judge over at least this long, and at least `window_batches` service times
    window_batches: float = 4.0
    decrease: float = 0.8  # scale multiplier per overloaded window
    increase: float = 1.15  # scale multiplier per calm window once calm for recover_after_s
    recover_after_s: float = 5.0
    min_scale: float = 0.05  # never below 5 % of each camera's requested rate
    notify_step: float = 0.1  # tell cameras when the scale moved by this much since the last notice

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1 < self.increase:
            raise ValueError(f"GovernorPolicy needs 0 < decrease < 1 < increase, got {self.decrease}/{self.increase}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"GovernorPolicy.min_scale must be in (0, 1], got {self.min_scale}")


class RateGovernor:
    """A pure state machine: feed it one observation per tick, read `scale` (1.0 = every camera's own rate)."""

    def __init__(self, policy: GovernorPolicy | None = None, *, max_wait_ms: float = 0.0) -> None:
        self.policy = policy or GovernorPolicy()
        self.max_wait_ms = max_wait_ms  # the batcher's own wait for company: waiting that long is by design
        self.scale = 1.0
        self._calm_s = 0.0
        self._notified = 1.0
        self._window_s = 0.0
        self._window_min_ms: float | None = None  # smallest queue wait at a batch start in this window

    def tick(
        self, *, waits_ms: list[float], elapsed_s: float, service_ms: float = 0.0, queued: int | None = None
    ) -> bool:
        """One observation: the queue wait of the oldest frame at each batch start since the last tick.

        Overload is a *standing* queue (as in CoDel): the smallest of those waits over a window of several
        batches stays above the limit. Bursts (one camera's queue overflowing, a slow batch) leave that
        minimum low, and a model that must stay busy keeps a small backlog without being cut back.
        Returns True when cameras should be told about a changed rate."""
        p = self.policy
        if waits_ms:
            low = min(waits_ms)
            self._window_min_ms = low if self._window_min_ms is None else min(self._window_min_ms, low)
        self._window_s += elapsed_s
        if self._window_s < max(p.window_s, p.window_batches * service_ms / 1000):
            return False
        limit = self.max_wait_ms + max(p.overload_wait_ms, p.overload_service_factor * service_ms)
        standing = self._window_min_ms
        window, self._window_s, self._window_min_ms = self._window_s, 0.0, None
        if standing is None and queued == 0:
            self.scale = 1.0
            self._calm_s = 0.0
        elif standing is not None and standing > limit:
            self.scale = max(p.min_scale, self.scale * p.decrease)
            self._calm_s = 0.0
        elif standing is None or standing < limit / 2:
            self._calm_s += window
            if self._calm_s >= p.recover_after_s and self.scale < 1.0:
                self.scale = min(1.0, self.scale * p.increase)
        if abs(self.scale - self._notified) >= p.notify_step or (self.scale == 1.0 and self._notified != 1.0):
            self._notified = self.scale
            return True
        return False
