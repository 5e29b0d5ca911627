"""The sim-tiny recipe: CNN teacher -> distilled BLIP vision encoder -> question/answer side, seeded."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.models import TINY_WORDS, build_blip_vqa, build_tokenizer, make_processor
from petstream.progress import bar
from training.augment import augment, normalize
from training.data import make_pool
from training.teacher import TeacherCNN
from training.vqa import QuestionIds, first_step_logits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (plus a few run-time knobs that do not)."""

    seed: int = 0
    image_size: int = 64
    patch_size: int = 8
    vision_layers: int = 3
    text_layers: int = 2
    hidden: int = 128
    heads: int = 4
    intermediate: int = 256
    pool_frames: int = 12000  # training frames rendered once, then augmented on the fly
    batch: int = 64
    teacher_steps: int = 600
    distill_steps: int = 3000
    vqa_steps: int = 0
    lr_teacher: float = 3e-3
    lr_distill: float = 1.5e-3
    lr_vqa: float = 5e-4
    text_steps: int = 400
    text_batch: int = 256
    lr_text: float = 1e-3
    val_frames: int = 384  # held-out frames for progress logs (not used for training)
    embed_passes: int = 2  # clean + augmented copies of the pool embedded for the text stage
    max_shift_px: float = 4.0
    workers: int = 2  # frame rendering processes (does not change the result)
    threads: int = 1  # torch CPU threads: 1 is deterministic and far faster on a busy 2-core machine
    device: str = "cpu"  # "cuda" for quick recipe experiments; the shipped model is trained on the CPU
    words: tuple[str, ...] = field(default_factory=lambda: TINY_WORDS)


def _schedule(step: int, total: int, warmup: int = 50) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))) * 0.97 + 0.03


def _batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            yield perm[i : i + batch]


def _loop(
    name: str,
    device: torch.device,
    params: list[nn.Parameter],
    lr: float,
    steps: int,
    step_fn: Callable[[int], torch.Tensor],
    probe: Callable[[], str] | None = None,
    probe_every: int = 250,
) -> float:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, steps))
    start, running = time.perf_counter(), 0.0
    for step in bar(range(steps), desc=name, unit="step"):  # a bar on a terminal only
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = step_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running = 0.95 * running + 0.05 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == steps - 1:
            log.info("%s step %d/%d loss %.4f (%.0f s)", name, step, steps, running, time.perf_counter() - start)
        if probe is not None and (step % probe_every == probe_every - 1 or step == steps - 1):
            log.info("%s step %d held-out accuracy %s", name, step, probe())
    return time.perf_counter() - start


class _AuxHeads(nn.Module):
    """Training-only heads on the vision encoder: teacher-feature regression and behavior logits."""

    def __init__(self, hidden: int, teacher_channels: int, labels: int = 3) -> None:
        super().__init__()
        self.features = nn.Linear(hidden, teacher_channels)
        self.labels = nn.Linear(hidden, labels)
        # mean+max over patch tokens, like the teacher's head: a small cue (a ball) gets its own gradient
        self.patches = nn.Linear(2 * hidden, labels)

    def patch_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.patches(torch.cat([tokens.mean(1), tokens.amax(1)], -1))


def _vision_losses(
    model: Any, heads: _AuxHeads, teacher: TeacherCNN, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    out = model.vision_model(pixel_values=x)
    with torch.no_grad():
        t_map, t_logits = teacher(x)
    t_tokens = F.layer_norm(t_map.flatten(2).transpose(1, 2), (t_map.shape[1],))
    s_tokens = heads.features(out.last_hidden_state[:, 1:])
    logits = heads.labels(out.pooler_output)
    loss = F.mse_loss(s_tokens, t_tokens)
    loss = loss + F.binary_cross_entropy_with_logits(logits, y)
    soft = torch.sigmoid(t_logits)
    loss = loss + 0.5 * F.binary_cross_entropy_with_logits(logits, soft)
    p_logits = heads.patch_logits(out.last_hidden_state[:, 1:])
    loss = loss + F.binary_cross_entropy_with_logits(p_logits, y)
    loss = loss + 0.5 * F.binary_cross_entropy_with_logits(p_logits, soft)
    return loss, out.last_hidden_state


def train(config: TrainConfig, out_dir: Path, pool: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Train sim-tiny from scratch and save_pretrained model + processor into out_dir; returns run facts.

    `pool` (frames, labels) replaces rendering, for experiments that share one pool.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if pool is None:
        pool = make_pool(config.pool_frames, config.seed, config.image_size, workers=config.workers)
    images, labels = pool
    device = torch.device(config.device)
    val_x, val_y = make_pool(config.val_frames, config.seed + 7919, config.image_size, workers=config.workers)
    val_in, val_truth = normalize(torch.from_numpy(val_x)).to(device), val_y > 0.5

    def accuracy(logits: torch.Tensor) -> str:
        right = ((logits.float().cpu().numpy() > 0) == val_truth).mean(0)
        return " ".join(f"{a:.3f}" for a in right)

    timings["render_s"] = time.perf_counter() - t0
    log.info(
        "rendered %d frames in %.0f s; positives %s",
        len(images),
        timings["render_s"],
        labels.mean(0).round(3),
    )
    device = torch.device(config.device)
    imgs, labs = torch.from_numpy(images), torch.from_numpy(labels)
    gen = torch.Generator().manual_seed(config.seed)
    batches = _batches(len(imgs), config.batch, gen)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = next(batches)
        return augment(imgs[idx], gen, config.max_shift_px).to(device), labs[idx].to(device)

    # 1. the teacher
    torch.manual_seed(config.seed + 1)
    teacher = TeacherCNN().to(device)

    def teacher_step(_: int) -> torch.Tensor:
        x, y = batch()
        return F.binary_cross_entropy_with_logits(teacher(x)[1], y)

    def teacher_probe() -> str:
        teacher.eval()
        with torch.no_grad():
            out = accuracy(teacher(val_in)[1])
        teacher.train()
        return out

    timings["teacher_s"] = _loop(
        "teacher",
        device,
        list(teacher.parameters()),
        config.lr_teacher,
        config.teacher_steps,
        teacher_step,
        teacher_probe,
    )
    teacher.eval()

    # 2. the BLIP vision encoder alone, against the teacher
    tokenizer = build_tokenizer(config.words)
    model = (
        build_blip_vqa(
            tokenizer,
            image_size=config.image_size,
            patch_size=config.patch_size,
            vision_layers=config.vision_layers,
            text_layers=config.text_layers,
            hidden=config.hidden,
            heads=config.heads,
            intermediate=config.intermediate,
            seed=config.seed,
        )
        .to(device)  # type: ignore[arg-type]
        .train()
    )
    torch.manual_seed(config.seed + 2)
    heads = _AuxHeads(config.hidden, 128).to(device)
    vision_params = list(model.vision_model.parameters()) + list(heads.parameters())

    def distill_step(_: int) -> torch.Tensor:
        x, y = batch()
        return _vision_losses(model, heads, teacher, x, y)[0]

    def vision_probe() -> str:
        model.eval()
        with torch.no_grad():
            vis = model.vision_model(pixel_values=val_in)
            out = accuracy(heads.labels(vis.pooler_output))
            out += " | patches " + accuracy(heads.patch_logits(vis.last_hidden_state[:, 1:]))
        model.train()
        return out

    timings["distill_s"] = _loop(
        "distill", device, vision_params, config.lr_distill, config.distill_steps, distill_step, vision_probe
    )

    # 3. the question/answer side alone, on cached image embeddings of the (augmented) pool
    ids = QuestionIds.build(tokenizer)
    answers = torch.tensor([ids.yes, ids.no], device=device)
    ids = ids.to(device)
    t = time.perf_counter()
    cache, cache_labels = _embed_pool(model, imgs, labs, gen, config, device)
    timings["embed_s"] = time.perf_counter() - t

    def answer_loss(embeds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = torch.zeros((), device=device)
        for q, logits in enumerate(first_step_logits(model, embeds, ids)):
            loss = loss + F.cross_entropy(logits.float(), answers[(y[:, q] < 0.5).long()]) / len(ids.questions)
        return loss

    def text_step(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(cache), (config.text_batch,), generator=gen)
        return answer_loss(cache[idx].to(device).float(), cache_labels[idx].to(device))

    text_params = list(model.text_encoder.parameters()) + list(model.text_decoder.parameters())

    def answer_probe() -> str:
        model.eval()
        with torch.no_grad():
            embeds = model.vision_model(pixel_values=val_in).last_hidden_state
            logits = [lg[:, ids.yes] - lg[:, ids.no] for lg in first_step_logits(model, embeds, ids)]
        model.train()
        return accuracy(torch.stack(logits, 1))

    timings["text_s"] = _loop(
        "text",
        device,
        text_params,
        config.lr_text,
        config.text_steps,
        text_step,
        answer_probe,
        probe_every=100,
    )

    # 4. optionally the whole VQA model, vision kept close to the teacher
    def vqa_step(_: int) -> torch.Tensor:
        x, y = batch()
        aux, embeds = _vision_losses(model, heads, teacher, x, y)
        return 0.3 * aux + answer_loss(embeds, y)

    if config.vqa_steps:
        all_params = list(model.parameters()) + list(heads.parameters())
        timings["vqa_s"] = _loop(
            "vqa",
            device,
            all_params,
            config.lr_vqa,
            config.vqa_steps,
            vqa_step,
            answer_probe,
            probe_every=100,
        )
    model = model.cpu().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    make_processor(tokenizer, config.image_size).save_pretrained(out_dir)
    timings["total_s"] = time.perf_counter() - t0
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "words"},
        "parameters": sum(p.numel() for p in model.parameters()),
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "train_positive_rate": dict(
            zip(("barking", "playing", "chewing_furniture"), labels.mean(0).round(3).tolist(), strict=True)
        ),
    }


@torch.no_grad()
def _embed_pool(
    model: Any,
    imgs: torch.Tensor,
    labs: torch.Tensor,
    gen: torch.Generator,
    config: TrainConfig,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image embeddings (bf16) of `embed_passes` augmented copies of the pool, with their labels."""
    model.eval()
    out = []
    for p in range(config.embed_passes):
        for i in range(0, len(imgs), 256):
            chunk = imgs[i : i + 256]
            x = augment(chunk, gen, config.max_shift_px) if p else normalize(chunk)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out.append(model.vision_model(pixel_values=x.to(device)).last_hidden_state.to(torch.bfloat16).cpu())
    model.train()
    return torch.cat(out), labs.repeat(config.embed_passes, 1)


def set_deterministic() -> None:
    torch.use_deterministic_algorithms(True, warn_only=True)
    np.random.seed(0)
