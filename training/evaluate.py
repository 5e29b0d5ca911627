"""Accuracy of a sim-tiny-style model on fresh random scenes, raw or after a real H.264 round trip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import BlipForQuestionAnswering

from simulators.scenes import random_scene
from simulators.timeline import BEHAVIORS
from training.augment import normalize
from training.data import labels_vector, to_model_input
from training.vqa import QuestionIds, first_step_logits, p_yes


@dataclass(frozen=True)
class EvalResult:
    """Per-behavior accuracy and how confident the yes-probabilities are."""

    frames: int
    accuracy: dict[str, float]
    confident: float  # share of answers with p_yes < 0.1 or > 0.9

    def as_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "accuracy": self.accuracy, "confident_share": self.confident}


def fresh_frames(n: int, seed: int, size: tuple[int, int] = (640, 360)) -> tuple[list[np.ndarray], np.ndarray]:
    """n random camera frames at `size` and their labels (n x 3)."""
    rng = np.random.default_rng([seed, 0xE7A1])
    frames, labels = [], []
    for _ in range(n):
        img, names = random_scene(rng, *size)
        frames.append(img)
        labels.append(labels_vector(names))
    return frames, np.stack(labels)


def h264_roundtrip(frames: list[np.ndarray], crf: int = 28, fps: int = 15) -> list[np.ndarray]:
    """Encode the frames as one H.264 stream with libx264 and decode it back (what the server sees)."""
    import av

    h, w = frames[0].shape[:2]
    out_frames: list[np.ndarray] = []
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
    codec.framerate = fps  # type: ignore[assignment]
    codec.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    packets = []
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        packets += codec.encode(frame)
    packets += codec.encode(None)
    for packet in packets:
        for frame in decoder.decode(packet):
            out_frames.append(frame.to_ndarray(format="rgb24"))
    for frame in decoder.decode(None):
        out_frames.append(frame.to_ndarray(format="rgb24"))
    return out_frames


@torch.no_grad()
def predict(model: BlipForQuestionAnswering, ids: QuestionIds, frames: list[np.ndarray], image_size: int) -> np.ndarray:
    """p_yes per frame and question (n x 3), frames squashed to image_size with area interpolation."""
    model.eval()
    batch = torch.from_numpy(np.stack([to_model_input(f, image_size) for f in frames]))
    out = []
    for start in range(0, len(batch), 64):
        embeds = model.vision_model(pixel_values=normalize(batch[start : start + 64])).last_hidden_state
        out.append(torch.stack([p_yes(lg, ids) for lg in first_step_logits(model, embeds, ids)], 1))
    return torch.cat(out).numpy()


def score(probs: np.ndarray, labels: np.ndarray) -> EvalResult:
    correct = (probs > 0.5) == (labels > 0.5)
    acc = {b: float(correct[:, i].mean()) for i, b in enumerate(BEHAVIORS)}
    confident = float(((probs < 0.1) | (probs > 0.9)).mean())
    return EvalResult(len(labels), acc, confident)


def evaluate(
    model: BlipForQuestionAnswering,
    ids: QuestionIds,
    *,
    n: int,
    seed: int,
    image_size: int,
    size: tuple[int, int] = (640, 360),
    h264: bool = False,
) -> EvalResult:
    """Accuracy on n fresh frames (seed unseen in training), optionally after an H.264 round trip."""
    frames, labels = fresh_frames(n, seed, size)
    if h264:
        frames = h264_roundtrip(frames)
    return score(predict(model, ids, frames, image_size), labels)


def evaluate_cameras(
    model: BlipForQuestionAnswering,
    ids: QuestionIds,
    *,
    cameras: int,
    seed: int,
    image_size: int,
    seconds: float = 90.0,
    fps: float = 2.0,
    size: tuple[int, int] = (640, 360),
) -> EvalResult:
    """Accuracy on synthetic cameras: scripted timelines rendered, sent through libx264 as one stream each."""
    from simulators.scenes import SceneRenderer
    from simulators.timeline import Timeline

    probs, truth = [], []
    for cam in range(cameras):
        renderer = SceneRenderer(seed + cam, *size)
        timeline = Timeline.scripted(seed + cam, duration_s=seconds)
        times = np.arange(0.0, seconds, 1.0 / fps)
        frames = [renderer.render(float(t), timeline.state_at(float(t))) for t in times]
        probs.append(predict(model, ids, h264_roundtrip(frames, fps=max(1, round(fps))), image_size))
        truth.append(np.stack([labels_vector(timeline.labels_at(float(t))) for t in times]))
    return score(np.concatenate(probs), np.concatenate(truth))
