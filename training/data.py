"""Training frames: random scenes at camera sizes, codec-like artefacts, squashed to the model's size."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from simulators.scenes import random_scene
from simulators.timeline import BEHAVIORS

#: camera sizes frames are rendered at before being squashed (aspect not kept) like the server does
CAMERA_SIZES: tuple[tuple[int, int], ...] = (
    (256, 144),
    (320, 180),
    (320, 240),
    (480, 270),
    (640, 360),
    (640, 480),
    (1280, 720),
)
_SIZE_WEIGHTS = np.array([0.22, 0.22, 0.15, 0.1, 0.2, 0.08, 0.03])
_CHUNK = 500


def to_model_input(frame: np.ndarray, image_size: int) -> np.ndarray:
    """Squash an HxWx3 frame to image_size x image_size with area interpolation, as the server does."""
    return cv2.resize(frame, (image_size, image_size), interpolation=cv2.INTER_AREA)


def camera_artefacts(rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    """Lossy-codec look: JPEG re-encoding at a random quality (blocks, ringing, chroma loss), some blur."""
    if rng.random() < 0.15:
        frame = cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.75:
        ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if ok and decoded is not None:
            frame = decoded[:, :, ::-1]
    return np.ascontiguousarray(frame)


def labels_vector(labels: frozenset[str]) -> np.ndarray:
    return np.array([b in labels for b in BEHAVIORS], np.float32)


def render_chunk(seed: int, chunk: int, count: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` frames of one chunk; the chunk's content depends only on (seed, chunk)."""
    rng = np.random.default_rng([seed, chunk])
    images = np.empty((count, image_size, image_size, 3), np.uint8)
    labels = np.empty((count, len(BEHAVIORS)), np.float32)
    for i in range(count):
        w, h = CAMERA_SIZES[int(rng.choice(len(CAMERA_SIZES), p=_SIZE_WEIGHTS))]
        frame, names = random_scene(rng, w, h)
        images[i] = to_model_input(camera_artefacts(rng, frame), image_size)
        labels[i] = labels_vector(names)
    return images, labels


def make_pool(n: int, seed: int, image_size: int, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """n frames (uint8 NxSxSx3) and labels (float32 Nx3, BEHAVIORS order); the same for any worker count."""
    jobs = [(seed, c, min(_CHUNK, n - c * _CHUNK), image_size) for c in range((n + _CHUNK - 1) // _CHUNK)]
    if workers <= 1:
        parts = [render_chunk(*job) for job in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            parts = list(pool.map(render_chunk, *zip(*jobs, strict=True)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
