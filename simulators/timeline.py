"""Scripted behavior timelines: what a synthetic camera's dog does when, so every frame's truth is known."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

BEHAVIORS: tuple[str, ...] = ("barking", "playing", "chewing_furniture")


@dataclass(frozen=True)
class Period:
    """One stretch of the script: [start_s, end_s) with the behaviors active in it."""

    start_s: float
    end_s: float
    behaviors: frozenset[str] = frozenset()
    dog_present: bool = True
    sleeping: bool = False

    def __post_init__(self) -> None:
        if not self.end_s > self.start_s:
            raise ValueError(f"Period.end_s ({self.end_s}) must be after start_s ({self.start_s})")
        unknown = set(self.behaviors) - set(BEHAVIORS)
        if unknown:
            raise ValueError(f"Period.behaviors: unknown {sorted(unknown)}; allowed {list(BEHAVIORS)}")
        if self.behaviors and (self.sleeping or not self.dog_present):
            raise ValueError("Period: a sleeping or absent dog cannot show behaviors")
        if self.sleeping and not self.dog_present:
            raise ValueError("Period: an absent dog cannot be sleeping")

    @property
    def still(self) -> bool:
        """True when nothing moves in the scene (no behavior, dog asleep, lying quietly or away)."""
        return not self.behaviors

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Timeline:
    """Back-to-back periods starting at 0 s; it loops, so any t >= 0 has a state."""

    periods: tuple[Period, ...]
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.periods:
            raise ValueError("Timeline.periods must not be empty")
        if self.periods[0].start_s != 0.0:
            raise ValueError("Timeline.periods must start at 0 s")
        for a, b in zip(self.periods, self.periods[1:], strict=False):
            if abs(a.end_s - b.start_s) > 1e-9:
                raise ValueError(f"Timeline.periods must be contiguous: {a.end_s} != {b.start_s}")
        object.__setattr__(self, "_starts", tuple(p.start_s for p in self.periods))

    @property
    def duration_s(self) -> float:
        return self.periods[-1].end_s

    def state_at(self, t: float) -> Period:
        """The period active at t seconds (t is taken modulo duration_s)."""
        t = float(t) % self.duration_s
        return self.periods[max(0, bisect.bisect_right(self._starts, t) - 1)]

    def labels_at(self, t: float) -> frozenset[str]:
        """Behaviors active at t seconds."""
        return self.state_at(t).behaviors

    def time_with(self, behavior: str) -> float:
        """Total seconds per loop during which `behavior` is active."""
        return sum(p.duration_s for p in self.periods if behavior in p.behaviors)

    @classmethod
    def scripted(
        cls, seed: int, duration_s: float = 120.0, still_fraction: float = 0.5, *, every_behavior: bool = True
    ) -> Timeline:
        """A random but deterministic script of still periods and 6-20 s behavior periods.

        Roughly `still_fraction` of the time is still (quiet, sleeping or absent dog); behavior periods
        sometimes overlap two behaviors. With `every_behavior`, every behavior occurs at least once when
        duration_s >= 60, even if that makes the script less still than asked; without it, `still_fraction` holds.
        """
        if duration_s <= 0:
            raise ValueError(f"Timeline.scripted: duration_s must be > 0, got {duration_s}")
        if not 0.0 <= still_fraction <= 1.0:
            raise ValueError(f"Timeline.scripted: still_fraction must be in [0, 1], got {still_fraction}")
        rng = np.random.default_rng(seed)
        active_total = duration_s * (1.0 - still_fraction)
        # behavior periods: make sure each behavior appears once (in random order) before random extras
        acts: list[tuple[float, frozenset[str]]] = []
        order = list(rng.permutation(len(BEHAVIORS))) if every_behavior else []
        used = 0.0
        while used < active_total - 3.0 or (duration_s >= 60 and order):
            if order:
                names = {BEHAVIORS[order.pop()]}
            else:
                names = {BEHAVIORS[int(rng.integers(len(BEHAVIORS)))]}
            if rng.random() < 0.25:
                names.add(BEHAVIORS[int(rng.integers(len(BEHAVIORS)))])
            length = float(rng.uniform(6.0, 20.0))
            length = min(length, max(active_total - used, 6.0))
            acts.append((length, frozenset(names)))
            used += length
        still_total = max(duration_s - used, 0.0)
        # still gaps: one before each behavior period and one at the end, random share of still_total
        weights = rng.uniform(0.3, 1.0, size=len(acts) + 1)
        gaps = [float(g) for g in still_total * weights / weights.sum()]
        scale = duration_s / (used + still_total) if used + still_total > 0 else 1.0
        periods: list[Period] = []
        t = 0.0

        def add(length: float, **kw: object) -> None:
            nonlocal t
            if length * scale < 0.05:
                return
            end = float(min(t + length * scale, duration_s))
            periods.append(Period(t, end, **kw))  # type: ignore[arg-type]
            t = end

        for gap, (length, active) in zip(gaps, acts + [(0.0, frozenset())], strict=True):
            kind = rng.choice(["quiet", "sleeping", "absent"], p=[0.5, 0.3, 0.2])
            add(gap, dog_present=kind != "absent", sleeping=kind == "sleeping")
            if length:
                add(length, behaviors=active)
        if not periods:
            periods.append(Period(0.0, duration_s))
        last = periods[-1]
        if last.end_s != duration_s:
            periods[-1] = Period(last.start_s, float(duration_s), last.behaviors, last.dog_present, last.sleeping)
        return cls(tuple(periods))
