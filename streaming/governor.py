"""Overload governor: lowers every live camera's sampling rate when the model falls behind, restores it after."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GovernorPolicy:
    """When and how fast the sampling rate scale moves. Every field has a default; validated on creation."""

    overload_wait_ms: float = 1000.0  # a batch starting with a frame queued longer than this means overload
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

    def tick(self, *, dropped: int, oldest_wait_ms: float, elapsed_s: float) -> bool:
        """One observation: frames dropped and the longest queue wait since the last tick.

        Returns True when cameras should be told about a changed rate."""
        p = self.policy
        if dropped > 0 or oldest_wait_ms > p.overload_wait_ms:
            self.scale = max(p.min_scale, self.scale * p.decrease)
            self._calm_s = 0.0
        else:
            self._calm_s += elapsed_s
            if self._calm_s >= p.recover_after_s and self.scale < 1.0:
                self.scale = min(1.0, self.scale * p.increase)
        if abs(self.scale - self._notified) >= p.notify_step or (self.scale == 1.0 and self._notified != 1.0):
            self._notified = self.scale
            return True
        return False
