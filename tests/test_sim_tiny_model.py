"""The shipped sim-tiny model answers the three questions on fresh scenes (stock forward pass, first step)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from inference.types import DEFAULT_QUESTIONS
from simulators.scenes import random_scene
from simulators.timeline import BEHAVIORS

SIM_TINY = Path(
    os.environ.get("SIM_TINY_DIR", Path(__file__).resolve().parent.parent / "inference" / "assets" / "sim-tiny")
)
pytestmark = pytest.mark.skipif(not (SIM_TINY / "config.json").exists(), reason="sim-tiny is not shipped here")

FRAMES = 96
SEED = 424242  # unseen in training (training pools use small seeds)


def test_sim_tiny_accuracy_per_behavior() -> None:
    import cv2
    import torch
    from transformers import BlipForQuestionAnswering, BlipProcessor

    model = BlipForQuestionAnswering.from_pretrained(SIM_TINY).eval()
    processor = BlipProcessor.from_pretrained(SIM_TINY)
    size = model.config.vision_config.image_size
    tok = processor.tokenizer
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    rng = np.random.default_rng(SEED)
    images, labels = [], []
    for i in range(FRAMES):
        w, h = ((640, 360), (320, 240), (480, 270))[i % 3]
        frame, names = random_scene(rng, w, h)
        images.append(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA))
        labels.append([b in names for b in BEHAVIORS])
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    truth = np.array(labels)
    correct = np.zeros_like(truth)
    confident = []
    dec = torch.full((FRAMES, 1), model.config.text_config.bos_token_id)
    with torch.no_grad():  # the stock forward's own steps: vision -> question encoder -> answer decoder
        image_embeds = model.vision_model(pixel_values=pixels).last_hidden_state
    image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long)
    for q_index, question in enumerate(DEFAULT_QUESTIONS):
        q = tok([question.text] * FRAMES, return_tensors="pt")  # one question: one length, no padding
        with torch.no_grad():
            q_embeds = model.text_encoder(
                input_ids=q["input_ids"],
                attention_mask=q["attention_mask"],
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_mask,
            )[0]
            logits = model.text_decoder(
                input_ids=dec, encoder_hidden_states=q_embeds, encoder_attention_mask=q["attention_mask"]
            ).logits
        p_yes = torch.softmax(logits[:, 0, [yes, no]], -1)[:, 0].numpy()
        correct[:, q_index] = (p_yes > 0.5) == truth[:, BEHAVIORS.index(question.name)]
        confident.append(((p_yes < 0.1) | (p_yes > 0.9)).mean())
    accuracy = dict(zip(BEHAVIORS, correct.mean(0), strict=True))
    assert min(accuracy.values()) >= 0.95, accuracy
    assert float(np.mean(confident)) > 0.7
