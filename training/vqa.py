"""Yes/no answers of a stock BLIP VQA model: the decoder's first step after [DEC], batched per question."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import BertTokenizerFast, BlipForQuestionAnswering  # type: ignore[attr-defined]

from inference.types import DEFAULT_QUESTIONS


@dataclass(frozen=True)
class QuestionIds:
    """Token ids of the fixed questions (each at its own length: no padding) and of the answers."""

    questions: tuple[torch.Tensor, ...]  # each 1xL
    dec: int
    yes: int
    no: int

    @classmethod
    def build(cls, tokenizer: BertTokenizerFast, texts: tuple[str, ...] | None = None) -> QuestionIds:
        texts = texts or tuple(q.text for q in DEFAULT_QUESTIONS)
        qs = tuple(torch.tensor([tokenizer(t)["input_ids"]]) for t in texts)
        yes, no = (tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no"))
        if tokenizer.unk_token_id in (yes, no):
            raise ValueError("the tokenizer must have 'yes' and 'no' as whole tokens")
        return cls(qs, tokenizer.bos_token_id, yes, no)

    def to(self, device: torch.device) -> QuestionIds:
        return QuestionIds(tuple(q.to(device) for q in self.questions), self.dec, self.yes, self.no)


def first_step_logits(
    model: BlipForQuestionAnswering, image_embeds: torch.Tensor, ids: QuestionIds
) -> list[torch.Tensor]:
    """Per question, the decoder's first-step logits over the vocabulary (N x V) for N image embeddings."""
    n = image_embeds.shape[0]
    dev = image_embeds.device
    image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=dev)
    dec = torch.full((n, 1), ids.dec, dtype=torch.long, device=dev)
    out = []
    for q in ids.questions:
        q_ids = q.expand(n, -1)
        q_mask = torch.ones_like(q_ids)
        q_embeds = model.text_encoder(
            input_ids=q_ids,
            attention_mask=q_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        )[0]
        logits = model.text_decoder(
            input_ids=dec, encoder_hidden_states=q_embeds, encoder_attention_mask=q_mask, return_dict=True
        ).logits
        out.append(logits[:, 0, :])
    return out


def p_yes(logits: torch.Tensor, ids: QuestionIds) -> torch.Tensor:
    """Probability of "yes" between the two answers."""
    return torch.softmax(logits[:, [ids.yes, ids.no]].float(), dim=-1)[:, 0]
