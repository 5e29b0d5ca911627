"""The reference answer: the unmodified monolithic transformers model, one (frame, question) at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from inference.stages import yes_no_ids

if TYPE_CHECKING:
    from transformers import BlipForQuestionAnswering, BlipProcessor


@torch.no_grad()
def reference_p_yes(
    model: BlipForQuestionAnswering, processor: BlipProcessor, image: np.ndarray, question: str
) -> float:
    """p_yes from the first decoder step exactly as `generate()` computes it (processor, fp32, unpadded)."""
    yes_id, no_id = yes_no_ids(processor.tokenizer)
    inputs = processor(images=image, text=question, return_tensors="pt")
    param = next(model.parameters())
    pixel_values = inputs["pixel_values"].to(param.device, param.dtype)
    input_ids = inputs["input_ids"].to(param.device)
    image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=param.device)
    question_embeds = model.text_encoder(
        input_ids=input_ids,
        attention_mask=inputs["attention_mask"].to(param.device),
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_mask,
    ).last_hidden_state
    bos = torch.full((1, 1), model.decoder_start_token_id, device=param.device)
    logits = model.text_decoder(
        input_ids=bos,
        encoder_hidden_states=question_embeds,
        encoder_attention_mask=torch.ones(question_embeds.shape[:-1], dtype=torch.long, device=param.device),
    ).logits[:, -1]
    logp = torch.log_softmax(logits.float(), dim=-1)[0]
    ly, ln = logp[yes_id].exp(), logp[no_id].exp()
    return float(ly / (ly + ln))
