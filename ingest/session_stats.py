"""What one camera stream counted: every chunk, frame and message it sent or was sent, accounted for."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SessionStats:
    """Everything counted for one camera: nothing it sends is lost without a count here."""

    chunks: int = 0
    bytes: int = 0
    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_scored: int = 0
    skipped_by_sampler: int = 0  # decoded, but the sampling policy did not pick it
    not_decoded_by_policy: int = 0  # not even decoded (keyframes-only or compressed-domain gating)
    skipped_resync: int = 0  # packets dropped while waiting for a keyframe after bad data
    corrupt: int = 0  # decoded pictures FFmpeg flagged as concealed damage: never sampled or scored
    refreshed: int = 0  # live cameras: a waiting sampled frame's picture replaced by a newer one (late binding)
    dropped: Counter[str] = field(default_factory=Counter)  # by reason: backpressure, stale, shutdown
    warnings: Counter[str] = field(default_factory=Counter)  # by code
    model_errors: int = 0
    events: int = 0
    outbox_dropped: Counter[str] = field(default_factory=Counter)  # scores/warnings not sent: camera not reading
    chunks_discarded: int = 0  # read but not decoded: the stream was ending (a restart's drain, an early status)
