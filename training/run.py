"""One train-sim run: train, evaluate on fresh frames (raw and H.264 round trip), write the card."""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

import torch
import transformers

from training.card import write_card
from training.evaluate import evaluate, evaluate_cameras
from training.recipe import TrainConfig, train
from training.vqa import QuestionIds

log = logging.getLogger(__name__)

#: seeds of the evaluation frames: far from any training seed
EVAL_SEED = 1_000_003


def evaluate_folder(folder: Path, *, frames: int, seed: int = EVAL_SEED) -> dict[str, dict]:
    """Fresh-frame accuracy of a saved model at several camera sizes, and after a libx264 round trip."""
    from transformers import BlipForQuestionAnswering, BlipProcessor

    model = BlipForQuestionAnswering.from_pretrained(folder).eval()
    processor = BlipProcessor.from_pretrained(folder)
    ids = QuestionIds.build(processor.tokenizer)
    size = model.config.vision_config.image_size
    results: dict[str, dict] = {}
    for w, h in ((640, 360), (320, 240), (1280, 720)):
        n = frames if w == 640 else max(frames // 3, 30)
        results[f"raw {w}x{h}"] = evaluate(model, ids, n=n, seed=seed + w, image_size=size, size=(w, h)).as_dict()
    results["h264 640x360 (libx264 crf 28)"] = evaluate(
        model, ids, n=max(frames // 2, 30), seed=seed + 1, image_size=size, size=(640, 360), h264=True
    ).as_dict()
    results["h264 cameras 640x360 (scripted timelines, 2 fps)"] = evaluate_cameras(
        model, ids, cameras=max(frames // 90, 2), seed=seed + 2, image_size=size
    ).as_dict()
    return results


def train_sim(out_dir: Path, *, eval_frames: int = 300, **overrides: object) -> dict:
    """Train sim-tiny into out_dir, evaluate it, write its training card; returns the card's facts."""
    config = TrainConfig(**overrides)  # type: ignore[arg-type]
    start = time.perf_counter()
    facts = train(config, out_dir)
    if eval_frames:
        t = time.perf_counter()
        facts["evaluation"] = evaluate_folder(out_dir, frames=eval_frames)
        facts["timings"]["evaluate_s"] = round(time.perf_counter() - t, 1)
    facts["timings"]["wall_s"] = round(time.perf_counter() - start, 1)
    facts["machine"] = f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip()
    facts["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    facts["created"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    write_card(out_dir, facts)
    return facts
