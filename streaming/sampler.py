"""Frame samplers: decide, per decoded frame, whether the model should look at it."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar


class Sampler(abc.ABC):
    """Decides per frame (by presentation time) whether to sample it; one instance per camera session."""

    name: ClassVar[str]

    @abc.abstractmethod
    def should_sample(self, pts_us: int, *, key_frame: bool) -> bool:
        """True when this frame should go to the model."""


_REGISTRY: dict[str, Callable[..., Sampler]] = {}


def register(name: str) -> Callable[[type[Sampler]], type[Sampler]]:
    def deco(cls: type[Sampler]) -> type[Sampler]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def create(name: str, **kwargs: float) -> Sampler:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; allowed: {sorted(_REGISTRY)}") from None
    return factory(**kwargs)


@register("rate")
class RateSampler(Sampler):
    """Caps a camera to `fps` sampled frames per second of video time (pts), evenly spaced."""

    def __init__(self, fps: float = 1.0) -> None:
        if not fps > 0:
            raise ValueError(f"sample_fps must be > 0, got {fps}")
        self.interval_us = int(round(1e6 / fps))
        self._next_us: int | None = None
        self._last_us = 0

    def should_sample(self, pts_us: int, *, key_frame: bool) -> bool:
        if self._next_us is not None and self._last_us <= pts_us < self._next_us:
            return False
        if self._next_us is None or pts_us >= self._next_us + self.interval_us or pts_us < self._last_us:
            self._next_us = pts_us + self.interval_us  # first frame, a gap, or the clock jumped back: re-anchor
        else:
            self._next_us += self.interval_us  # keep an even cadence without drift
        self._last_us = pts_us
        return True
