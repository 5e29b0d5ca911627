"""Calibration frames for int8 compilation: the simulator's random scenes through H.264, decoded as ingest sees them.

Written as the .npz that inference.calibration reads (`frames` uint8 [N,S,S,3], `source`, `seed`); this layer
does not import the inference layer, the file format is the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from av.video.codeccontext import VideoCodecContext

from simulators.scenes import random_scene
from simulators.video import CAMERA_LIKE, FrameEncoder

DEFAULT_FRAMES = 40
DEFAULT_SEED = 20261201  # apart from the training and test seeds


def scene_frames(
    count: int = DEFAULT_FRAMES,
    *,
    seed: int = DEFAULT_SEED,
    width: int = 640,
    height: int = 360,
    size: int = 384,
) -> np.ndarray:
    """`count` random scenes, encoded like a camera (H.264, x264 veryfast, 1 Mbit/s cap) and decoded with PyAV,
    then squashed to `size` x `size` the way ingest scales sampled frames: [count, size, size, 3] uint8 RGB."""
    if count < 1:
        raise ValueError(f"count={count}: must be at least 1")
    rng = np.random.default_rng(seed)
    encoder = FrameEncoder(
        "h264", width, height, fps=15, gop=15, bitrate=CAMERA_LIKE.bitrate, preset=CAMERA_LIKE.preset
    )
    decoder = cast(VideoCodecContext, av.CodecContext.create("h264", "r"))
    packets: list[bytes] = []
    for i in range(count):
        image, _ = random_scene(rng, width, height)
        packets += [data for data, _, _ in encoder.encode(image, round(i * 1e6 / 15))]
    packets += [data for data, _, _ in encoder.flush()]
    out = []
    for data in [*packets, b""]:  # b"" flushes the parser's last frame
        for packet in decoder.parse(data):
            out += [f.to_ndarray(format="rgb24") for f in decoder.decode(packet)]
    out += [f.to_ndarray(format="rgb24") for f in decoder.decode(None)]
    if len(out) != count:
        raise RuntimeError(f"decoded {len(out)} frames of {count} encoded")
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in out])


def write_calibration(
    path: str | Path, count: int = DEFAULT_FRAMES, *, seed: int = DEFAULT_SEED, size: int = 384
) -> Path:
    """Write the calibration .npz for `petstream compile --calibration`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = scene_frames(count, seed=seed, size=size)
    source = f"simulators.scenes.random_scene, 640x360 H.264 (x264 {CAMERA_LIKE.preset}, 1 Mbit/s), PyAV decode"
    np.savez_compressed(path, frames=frames, source=np.array(source), seed=np.array(seed))
    return path
