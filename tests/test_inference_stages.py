"""Staged BLIP vs the unmodified monolithic model: question lengths, batching, shared K/V, the padding trap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.models import load_model
from inference.reference import reference_p_yes
from inference.stages import StagedBlip, yes_no_ids

QUESTIONS = ("is the dog barking?", "is the dog chewing furniture?", "dog?", "what is the pet playing?")


@pytest.fixture(scope="module")
def tiny():
    model, processor = load_model("tiny")
    return model, processor, StagedBlip(model, processor.tokenizer)


def frames(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def tokens(processor, texts) -> tuple[torch.Tensor, torch.Tensor]:
    enc = processor.tokenizer(list(texts), padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def test_yes_no_ids_come_from_tokenizer(tiny):
    _, processor, _ = tiny
    yes, no = yes_no_ids(processor.tokenizer)
    assert processor.tokenizer.convert_ids_to_tokens([yes, no]) == ["yes", "no"]


@torch.no_grad()
def test_staged_batched_padded_equals_monolithic_one_at_a_time(tiny):
    model, processor, staged = tiny
    images = frames(3)
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    ids, mask = tokens(processor, QUESTIONS)
    assert len(set(mask.sum(1).tolist())) >= 3, "the questions must have different token lengths"
    ref = np.array([[reference_p_yes(model, processor, im, q) for q in QUESTIONS] for im in images])
    assert ref.std() > 0.01, "the tiny model's answers must differ, or equality proves nothing"
    p = staged(pixels, ids, mask)
    assert p.shape == (3, len(QUESTIONS))
    np.testing.assert_allclose(p.numpy(), ref, atol=1e-5, rtol=0)


@torch.no_grad()
def test_shared_kv_equals_stock_text_encoder(tiny):
    model, processor, staged = tiny
    pixels = processor.image_processor(frames(2, seed=1), return_tensors="pt")["pixel_values"]
    texts = ["is the dog barking?", "what is the pet playing?"]
    ids, mask = tokens(processor, texts)
    embeds = model.vision_model(pixel_values=pixels).last_hidden_state
    shared = staged.text(ids, mask, staged.vision(pixels))
    for f in range(2):
        for q, text in enumerate(texts):
            alone = tokens(processor, [text])[0]
            stock = model.text_encoder(input_ids=alone, encoder_hidden_states=embeds[f : f + 1]).last_hidden_state
            n = alone.shape[1]
            torch.testing.assert_close(shared[f, q, :n], stock[0], atol=1e-5, rtol=0)


@torch.no_grad()
def test_padding_questions_changes_answers_so_stages_never_pad(tiny):
    """The trap: stock BLIP ignores the mask in cross-attention, so padded questions change p_yes; ours don't."""
    model, processor, staged = tiny
    image = frames(1, seed=2)[0]
    short, long = "is there a cat?", "what is the pet playing?"
    batch = processor(images=[image, image], text=[short, long], padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    embeds = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
    q = model.text_encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], encoder_hidden_states=embeds
    ).last_hidden_state
    bos = torch.full((2, 1), model.decoder_start_token_id)
    logits = model.text_decoder(
        input_ids=bos, encoder_hidden_states=q, encoder_attention_mask=batch["attention_mask"]
    ).logits[0, -1]
    yes, no = yes_no_ids(processor.tokenizer)
    p_stock_padded = torch.softmax(logits[[yes, no]], 0)[0].item()
    p_ref = reference_p_yes(model, processor, image, short)
    assert abs(p_stock_padded - p_ref) > 1e-4, "padding no longer matters: the trap test lost its teeth"
    ids, mask = tokens(processor, [short, long])
    p_staged = staged(batch["pixel_values"][:1], ids, mask)[0, 0].item()
    assert abs(p_staged - p_ref) <= 1e-5
