"""Encoded video for simulated cameras: synthetic scenes encoded live (recorded clips: simulators/clip.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

WireCodec = Literal["h264", "hevc", "mjpeg"]
_ENCODERS = {"h264": "libx264", "hevc": "libx265"}


@dataclass(frozen=True)
class EncodingProfile:
    """How a synthetic camera encodes. The default is cheap to make and to decode (fast tests); CAMERA_LIKE is what
    a real 720p pet camera uplink looks like: CABAC and deblocking (x264 veryfast), a 1 Mbit/s cap, sensor noise."""

    preset: str = "ultrafast"  # x264/x265 preset (ultrafast: no CABAC, no deblocking)
    bitrate: int = 0  # bit/s cap (VBV); 0 = constant quality
    noise: float = 0.0  # sensor noise, standard deviation in 8-bit levels


CHEAP = EncodingProfile()
CAMERA_LIKE = EncodingProfile(preset="veryfast", bitrate=1_000_000, noise=2.0)


@dataclass(frozen=True, repr=False)
class EncodedUnit:
    """One encoded access unit (one frame) as a camera sends it, with the truth of what it shows."""

    data: bytes
    pts_us: int
    key: bool
    labels: frozenset[str] = frozenset()  # ground-truth behaviors (synthetic cameras only)
    dts_us: int | None = None  # decode time, where it differs from pts_us (B-frames): when the unit is due to be sent

    def __repr__(self) -> str:
        return f"EncodedUnit({len(self.data)} B, pts_us={self.pts_us}, key={self.key}, labels={sorted(self.labels)})"


class FrameEncoder:
    """Encodes RGB frames into an Annex-B H.264/HEVC elementary stream (or JPEGs) with PyAV."""

    def __init__(
        self,
        codec: WireCodec,
        width: int,
        height: int,
        fps: float,
        gop: int,
        bitrate: int = 0,
        preset: str = "ultrafast",
    ) -> None:
        if codec not in ("h264", "hevc", "mjpeg"):
            raise ValueError(f"codec {codec!r}; allowed: h264, hevc, mjpeg")
        self.codec = codec
        self.fps = fps
        name = "mjpeg" if codec == "mjpeg" else _ENCODERS[codec]
        ctx = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.framerate = Fraction(fps).limit_denominator(1000)
        if codec != "mjpeg":
            ctx.gop_size = gop
            ctx.max_b_frames = 0  # live cameras send frames in display order
            opts = {"preset": preset, "tune": "zerolatency"}
            vbv = f":vbv-maxrate={bitrate // 1000}:vbv-bufsize={bitrate // 1000}" if bitrate else ""  # a capped uplink
            if codec == "h264":
                opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0{vbv}"
            else:
                opts["x265-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=none"
            ctx.options = opts
        if bitrate:
            ctx.bit_rate = bitrate
        self._ctx = ctx

    def encode(self, rgb: np.ndarray, pts_us: int) -> list[tuple[bytes, int, bool]]:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts_us
        frame.time_base = self._ctx.time_base
        return [
            (bytes(p), int(p.pts if p.pts is not None else pts_us), bool(p.is_keyframe))
            for p in self._ctx.encode(frame)
        ]

    def flush(self) -> list[tuple[bytes, int, bool]]:
        return [(bytes(p), int(p.pts or 0), bool(p.is_keyframe)) for p in self._ctx.encode(None)]


def synthetic_units(
    seed: int,
    *,
    width: int = 640,
    height: int = 360,
    fps: float = 15.0,
    gop: int = 30,
    duration_s: float | None = 120.0,
    codec: WireCodec = "h264",
    timeline=None,  # noqa: ANN001 - simulators.timeline.Timeline; default: Timeline.scripted(seed)
    profile: EncodingProfile = CHEAP,
) -> Iterator[EncodedUnit]:
    """A synthetic camera: the scene renderer along a scripted timeline, encoded frame by frame.

    duration_s None streams forever (the timeline loops)."""
    from simulators.scenes import SceneRenderer
    from simulators.timeline import Timeline

    timeline = timeline or Timeline.scripted(seed)
    renderer = SceneRenderer(seed, width, height)
    encoder = FrameEncoder(codec, width, height, fps, gop, bitrate=profile.bitrate, preset=profile.preset)
    noise = _noise_bank(seed, height, width, profile.noise) if profile.noise > 0 else []
    labels_by_pts: dict[int, frozenset[str]] = {}
    i = 0
    while duration_s is None or i < round(duration_s * fps):
        t = i / fps
        period = timeline.state_at(t)
        pts = round(t * 1e6)
        labels_by_pts[pts] = period.behaviors
        rgb = renderer.render(t, period)
        if noise:
            rgb = np.clip(rgb + noise[i % len(noise)], 0, 255).astype(np.uint8)
        for data, p, key in encoder.encode(rgb, pts):
            yield EncodedUnit(data, p, key, labels_by_pts.pop(p, frozenset()))
        i += 1
    for data, p, key in encoder.flush():
        yield EncodedUnit(data, p, key, labels_by_pts.pop(p, frozenset()))


def _noise_bank(seed: int, height: int, width: int, sigma: float, count: int = 7) -> list[np.ndarray]:
    """Temporal sensor noise: a few independent noise fields used in turn (a prime count, so no GOP aligns)."""
    rng = np.random.default_rng(seed + 10_007)
    return [rng.normal(0.0, sigma, (height, width, 3)).astype(np.float32) for _ in range(count)]
