"""Staged BLIP vs the unmodified monolithic model: question lengths, batching, shared K/V, the padding trap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.models import load_model
from inference.reference import reference_p_yes
from inference.stages import StagedBlip, yes_no_ids

QUESTIONS = ("is the dog barking?", "is the dog chewing furniture?", "is there a cat?", "what is the pet playing?")


@pytest.fixture(scope="module")
def tiny():
    model, processor = load_model("tiny")
    return model, processor, StagedBlip(model, processor.tokenizer)


def frames(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def ids_of(processor, texts) -> torch.Tensor:
    return processor.tokenizer(list(texts), return_tensors="pt")["input_ids"]


def test_yes_no_ids_come_from_tokenizer(tiny):
    _, processor, _ = tiny
    yes, no = yes_no_ids(processor.tokenizer)
    assert processor.tokenizer.convert_ids_to_tokens([yes, no]) == ["yes", "no"]


@torch.no_grad()
def test_staged_batched_equals_monolithic_one_at_a_time(tiny):
    model, processor, staged = tiny
    images = frames(3)
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    lengths = {len(processor.tokenizer(q)["input_ids"]) for q in QUESTIONS}
    assert len(lengths) >= 3, "the questions must have different token lengths"
    ref = np.array([[reference_p_yes(model, processor, im, q) for q in QUESTIONS] for im in images])
    assert ref.std() > 0.01, "the tiny model's answers must differ, or equality proves nothing"
    kv = staged.vision(pixels)
    for length in sorted(lengths):
        group = [i for i, q in enumerate(QUESTIONS) if len(processor.tokenizer(q)["input_ids"]) == length]
        p = staged.decoder(staged.text(ids_of(processor, [QUESTIONS[i] for i in group]), kv)).view(3, len(group))
        np.testing.assert_allclose(p.numpy(), ref[:, group], atol=1e-5, rtol=0)


@torch.no_grad()
def test_shared_kv_equals_stock_text_encoder(tiny):
    model, processor, staged = tiny
    pixels = processor.image_processor(frames(2, seed=1), return_tensors="pt")["pixel_values"]
    ids = ids_of(processor, ["is the dog barking?", "is the dog playing?"])
    embeds = model.vision_model(pixel_values=pixels).last_hidden_state
    shared = staged.text(ids, staged.vision(pixels)).view(2, 2, ids.shape[1], -1)
    for f in range(2):
        for q in range(2):
            stock = model.text_encoder(
                input_ids=ids[q : q + 1], encoder_hidden_states=embeds[f : f + 1]
            ).last_hidden_state
            torch.testing.assert_close(shared[f, q : q + 1], stock, atol=1e-5, rtol=0)


@torch.no_grad()
def test_padding_questions_changes_answers_so_stages_never_pad(tiny):
    """The trap the length grouping avoids: padded questions change p_yes (cross-attention ignores the mask)."""
    model, processor, staged = tiny
    image = frames(1, seed=2)[0]
    short, long = "is there a cat?", "what is the pet playing?"
    batch = processor(images=[image, image], text=[short, long], padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    embeds = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
    q = model.text_encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], encoder_hidden_states=embeds
    ).last_hidden_state
    p_padded = staged.decoder(q)[0].item()
    p_ref = reference_p_yes(model, processor, image, short)
    assert abs(p_padded - p_ref) > 1e-4, "padding no longer matters: the trap test lost its teeth"
    pixels = batch["pixel_values"][:1]
    p_staged = staged(pixels, ids_of(processor, [short]))[0, 0].item()
    assert abs(p_staged - p_ref) <= 1e-5
