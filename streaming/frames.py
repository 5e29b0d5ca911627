"""Typed, immutable values passed between stages: a decoded frame, a scored frame, a behavior event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

EventStateName = Literal["STARTED", "ENDED"]


@dataclass(frozen=True, repr=False)
class DecodedFrame:
    """One decoded picture of one camera, already scaled to the model's input size (RGB uint8)."""

    device_id: str
    frame_seq: int  # per-session counter of decoded frames, from 0
    pts_us: int  # presentation time from the camera, or assigned from arrival
    ingest_ns: int  # monotonic time the chunk that started this frame arrived
    decoded_ns: int  # monotonic time decoding finished
    key_frame: bool
    image: np.ndarray

    def __repr__(self) -> str:
        return (
            f"DecodedFrame(device_id={self.device_id!r}, frame_seq={self.frame_seq}, pts_us={self.pts_us}, "
            f"key_frame={self.key_frame}, image={self.image.shape})"
        )


@dataclass(frozen=True)
class FrameTimings:
    """Per-stage latency of one scored frame, in milliseconds (for metrics and benchmarks)."""

    decode_ms: float = 0.0  # chunk arrival -> frame decoded
    batch_wait_ms: float = 0.0  # decoded -> batch started (includes sample_wait_ms)
    sample_wait_ms: float = 0.0  # decoded -> queued for the model (sampling, scaling, hand-over to the batcher)
    vision_ms: float = 0.0
    text_ms: float = 0.0
    total_ms: float = 0.0  # chunk arrival -> scores ready


@dataclass(frozen=True)
class FrameScore:
    """The model's yes-probabilities for one sampled frame."""

    device_id: str
    frame_seq: int
    pts_us: int
    p_yes: Mapping[str, float]
    ingest_ns: int = 0
    timings: FrameTimings = field(default_factory=FrameTimings)
    pool: str = ""  # the backend pool that answered (FrameScores.pool)


@dataclass(frozen=True)
class Event:
    """A behavior episode starting or ending on one camera."""

    device_id: str
    behavior: str
    state: EventStateName
    confidence: float  # mean p_yes over the episode's positive samples so far
    pts_us: int  # time of the frame that triggered this transition
    frame_seq: int
    event_id: str  # shared by the STARTED and ENDED of one episode
    start_pts_us: int
    end_pts_us: int = 0  # set on ENDED
