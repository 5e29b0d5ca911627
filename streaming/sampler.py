"""Frame samplers: per camera, which frames are decoded and which of those the model looks at."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

DecodeMode = Literal["all", "keyframes", "gated"]
THUMB_SIZE = (64, 36)  # width, height of the grayscale copy motion gating looks at


@dataclass(frozen=True, repr=False)
class FrameInfo:
    """What a sampler may look at for one decoded frame."""

    pts_us: int
    key_frame: bool
    thumbnail: np.ndarray | None = None  # THUMB_SIZE grayscale uint8, only for samplers that ask for it


class Sampler(abc.ABC):
    """One instance per camera session. Called from the session's decode job only (one call at a time)."""

    name: ClassVar[str]
    #: all: decode every frame; keyframes: the decoder skips the rest; gated: want_packet() decides
    decode_mode: ClassVar[DecodeMode] = "all"
    needs_thumbnail: ClassVar[bool] = False

    def __init__(self, fps: float = 1.0, *, still_recheck_s: float = 20.0) -> None:
        if not fps > 0:
            raise ValueError(f"sample_fps must be > 0, got {fps}")
        if not still_recheck_s > 0:
            raise ValueError(f"still_recheck_s must be > 0, got {still_recheck_s}")
        self.fps = fps
        self.still_recheck_us = int(still_recheck_s * 1e6)
        self.rate_scale = 1.0  # lowered by the overload governor (read from the decode thread)
        self._next_us: float | None = None
        self._last_us = 0

    @property
    def interval_us(self) -> float:
        return 1e6 / (self.fps * self.rate_scale)

    def _rate_due(self, pts_us: int) -> bool:
        """The rate cap: True at most `fps` times per second of video, evenly spaced, without drift."""
        interval = self.interval_us
        # Camera timestamps are rounded to whole microseconds: a frame up to 1 ms early is on time.
        if self._next_us is not None and self._last_us <= pts_us < self._next_us - min(1000.0, interval / 8):
            return False
        if self._next_us is None or pts_us >= self._next_us + interval or pts_us < self._last_us:
            self._next_us = pts_us + interval  # first frame, a gap, or the clock jumped back: re-anchor
        else:
            self._next_us += interval
        self._last_us = pts_us
        return True

    @abc.abstractmethod
    def should_sample(self, frame: FrameInfo) -> bool:
        """True when the model should look at this decoded frame."""

    def want_packet(self, size: int, key: bool, pts_us: int) -> bool:  # noqa: ARG002 - used by gated samplers
        """For decode_mode 'gated': must this packet's frame be decoded (and be a candidate for sampling)?"""
        return True


_REGISTRY: dict[str, type[Sampler]] = {}


def register(name: str) -> Callable[[type[Sampler]], type[Sampler]]:
    def deco(cls: type[Sampler]) -> type[Sampler]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def create(name: str, fps: float = 1.0, *, still_recheck_s: float = 20.0) -> Sampler:
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sampling policy {name!r}; allowed: {sorted(_REGISTRY)}") from None
    return cls(fps, still_recheck_s=still_recheck_s)


def names() -> list[str]:
    return sorted(_REGISTRY)


@register("rate")
class RateSampler(Sampler):
    """Decodes every frame and looks at `fps` of them per second of video."""

    def should_sample(self, frame: FrameInfo) -> bool:
        return self._rate_due(frame.pts_us)


@register("keyframes")
class KeyframeSampler(Sampler):
    """Decodes keyframes only (the decoder skips the others unseen); looks at them at most `fps` per second."""

    decode_mode = "keyframes"

    def should_sample(self, frame: FrameInfo) -> bool:
        return frame.key_frame and self._rate_due(frame.pts_us)


class _MotionHold:
    """Gating samplers' "still moving" window: `hold_samples` sample intervals after the last motion seen."""

    def __init__(self, hold_samples: float, fps: float) -> None:
        self.hold_us = int(hold_samples * 1e6 / fps)
        self._last_motion_us: int | None = None

    def saw_motion(self, pts_us: int) -> None:
        self._last_motion_us = pts_us

    def moving(self, pts_us: int) -> bool:
        return self._last_motion_us is not None and 0 <= pts_us - self._last_motion_us <= self.hold_us


@register("motion")
class MotionSampler(Sampler):
    """Decodes every frame; looks at the rate cap while a small grayscale copy moves, else every still_recheck_s.

    Motion: at least `min_pixels` pixels of the THUMB_SIZE thumbnail changed by more than `pixel_delta` grey
    levels since the previous frame (a mean difference misses a barking mouth: measured 0.2-0.7 grey levels).
    A scene counts as moving for `hold_samples` sample intervals after the last motion (1.5 s at 2 frames/s, 3 s
    at 1), so an episode's end is seen too: the default event rule ends an episode after 2 negative samples."""

    needs_thumbnail = True

    def __init__(
        self,
        fps: float = 1.0,
        *,
        still_recheck_s: float = 20.0,
        pixel_delta: int = 8,
        min_pixels: int = 2,
        hold_samples: float = 3.0,
    ) -> None:
        super().__init__(fps, still_recheck_s=still_recheck_s)
        self.pixel_delta = pixel_delta
        self.min_pixels = min_pixels
        self._hold = _MotionHold(hold_samples, fps)
        self._prev: np.ndarray | None = None
        self._last_sample_us: int | None = None

    def should_sample(self, frame: FrameInfo) -> bool:
        if frame.thumbnail is None:
            raise ValueError("MotionSampler needs FrameInfo.thumbnail")
        thumb = frame.thumbnail.astype(np.int16)
        if self._prev is not None and self._prev.shape == thumb.shape:
            changed = int(np.count_nonzero(np.abs(thumb - self._prev) > self.pixel_delta))
            if changed >= self.min_pixels:
                self._hold.saw_motion(frame.pts_us)
        self._prev = thumb
        moving = self._hold.moving(frame.pts_us)
        recheck = self._last_sample_us is None or not 0 <= frame.pts_us - self._last_sample_us < self.still_recheck_us
        if (moving or recheck) and self._rate_due(frame.pts_us):
            self._last_sample_us = frame.pts_us
            return True
        return False


@register("compressed")
class CompressedSampler(Sampler):
    """Gates on compressed frame sizes: a still scene's P-frames are tiny, so they are not even decoded.

    A P-frame larger than `ratio` × the still baseline (a running low percentile of P sizes) plus `margin_bytes`
    means motion; while moving, every frame is decoded and looked at up to the rate cap. While still, only a
    keyframe every still_recheck_s is decoded. The decoder replays the GOP from its keyframe when decoding
    resumes mid-GOP, so references stay correct."""

    decode_mode = "gated"

    def __init__(
        self,
        fps: float = 1.0,
        *,
        still_recheck_s: float = 20.0,
        ratio: float = 4.0,
        margin_bytes: int = 300,
        hold_samples: float = 3.0,
    ) -> None:
        super().__init__(fps, still_recheck_s=still_recheck_s)
        self.ratio = ratio
        self.margin_bytes = margin_bytes
        self._hold = _MotionHold(hold_samples, fps)
        self._baseline: float | None = None
        self._last_decoded_key_us: int | None = None

    def want_packet(self, size: int, key: bool, pts_us: int) -> bool:
        if not key:
            if self._baseline is None:
                self._baseline = float(size)
            elif size > self.ratio * self._baseline + self.margin_bytes:
                self._hold.saw_motion(pts_us)
            else:  # only still-looking frames move the baseline: slow down, quick down
                rate = 0.3 if size < self._baseline else 0.02
                self._baseline += rate * (size - self._baseline)
        if self._hold.moving(pts_us):
            return True
        if key and (
            self._last_decoded_key_us is None
            or pts_us - self._last_decoded_key_us >= self.still_recheck_us
            or pts_us < self._last_decoded_key_us
        ):
            self._last_decoded_key_us = pts_us
            return True
        return False

    def should_sample(self, frame: FrameInfo) -> bool:
        return self._rate_due(frame.pts_us)
