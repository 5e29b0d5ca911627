"""Overload governor: lowers every live camera's sampling rate when the model falls behind, restores it after."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GovernorPolicy:
    """When and how fast the sampling rate scale moves. Every field has a default; validated on creation."""

    overload_wait_ms: float = 1000.0  # overload: a batch started with a frame queued longer than this ...
    overload_service_factor: float = 3.0  # ... and longer than this many batch service times
    decrease: float = 0.7  # scale multiplier per overloaded tick
    increase: float = 1.2  # scale multiplier per calm tick once calm for recover_after_s
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

    def __init__(self, policy: GovernorPolicy | None = None) -> None:
        self.policy = policy or GovernorPolicy()
        self.scale = 1.0
        self._calm_s = 0.0
        self._notified = 1.0

    def tick(self, *, dropped: int, oldest_wait_ms: float, elapsed_s: float, service_ms: float = 0.0) -> bool:
        """One observation: frames dropped, the longest queue wait and the batch service time since the last tick.

        Overload is judged by queueing delay, not by drops: a per-camera queue can overflow on a burst while
        the model keeps up, and a model that must stay busy needs a small backlog. Returns True when cameras
        should be told about a changed rate."""
        p = self.policy
        limit = max(p.overload_wait_ms, p.overload_service_factor * service_ms)
        if oldest_wait_ms > limit:
            self.scale = max(p.min_scale, self.scale * p.decrease)
            self._calm_s = 0.0
        elif oldest_wait_ms < limit / 2 or dropped == 0:
            self._calm_s += elapsed_s
            if self._calm_s >= p.recover_after_s and self.scale < 1.0:
                self.scale = min(1.0, self.scale * p.increase)
        if abs(self.scale - self._notified) >= p.notify_step or (self.scale == 1.0 and self._notified != 1.0):
            self._notified = self.scale
            return True
        return False
