"""The three BLIP VQA stages as traceable modules that reuse the unmodified transformers modules' weights."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import BlipForQuestionAnswering, PreTrainedTokenizerBase


def yes_no_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Token ids of the answers "yes" and "no", read from the tokenizer (never hard-coded)."""
    ids = []
    for word in ("yes", "no"):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no single token for the answer {word!r} (got {pieces})")
        ids.append(pieces[0])
    return ids[0], ids[1]


class VisionStage(nn.Module):
    """pixel_values [B,3,S,S] -> the image's cross-attention keys and values for every text-encoder layer.

    Output: [2*layers, B, heads, tokens, head_dim] (keys of layer i at 2i, values at 2i+1). The text encoder's
    cross-attention projects the image tokens the same way for every question, so this is done once per frame.
    """

    def __init__(self, model: BlipForQuestionAnswering) -> None:
        super().__init__()
        self.vision_model = model.vision_model
        cross = [layer.crossattention.self for layer in model.text_encoder.encoder.layer]
        self.keys = nn.ModuleList(c.key for c in cross)
        self.values = nn.ModuleList(c.value for c in cross)
        self.heads = cross[0].num_attention_heads
        self.head_dim = cross[0].attention_head_size
        # All layers' key and value projections of the image tokens as one GEMM ([2*layers*D, D] weights): one
        # large matrix product runs near the CPU's peak where 2*layers small ones do not (measured in OpenVINO
        # int8: the separate projections ran at about half the throughput of the encoder's linears).
        self.image_kv = fused_kv_linear(self.keys, self.values)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        return split_kv(self.image_kv(image_embeds), len(self.keys), self.heads, self.head_dim)


def fused_kv_linear(keys: Any, values: Any) -> nn.Linear:
    """One linear computing [k_0, v_0, k_1, v_1, ...] of every layer (a copy of the stock layers' weights)."""
    pairs = [m for kv in zip(keys, values, strict=True) for m in kv]
    fused = nn.Linear(pairs[0].in_features, sum(m.out_features for m in pairs), dtype=pairs[0].weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight for m in pairs]))
        fused.bias.copy_(torch.cat([m.bias for m in pairs]))
    return fused.requires_grad_(False)


def split_kv(fused: torch.Tensor, layers: int, heads: int, head_dim: int) -> torch.Tensor:
    """[B,T,2*layers*H*d] from fused_kv_linear -> [2*layers, B, H, T, d] (keys of layer i at 2i, values at 2i+1)."""
    b, t, _ = fused.shape
    return fused.view(b, t, 2 * layers, heads, head_dim).permute(2, 0, 3, 1, 4)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[R,L] 1/0 key mask -> [R,1,1,L] additive (0 or the dtype's minimum) for attention scores."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class TextEncoderStage(nn.Module):
    """(question ids [Q,L], their mask [Q,L], image K/V [2*layers,B,H,T,d]) -> question_embeds [B,Q,L,D].

    Every frame of the batch is asked the same Q questions, right-padded to the longest. The stock
    self-attention gets the padding mask; the cross-attention attends to image tokens only (never padded),
    against the frame's shared K/V. Real tokens therefore never see padding: the output at real positions
    equals running each question alone, unpadded. Padded positions hold garbage that the decoder masks out.
    """

    def __init__(self, model: BlipForQuestionAnswering) -> None:
        super().__init__()
        self.embeddings = model.text_encoder.embeddings
        self.layers = model.text_encoder.encoder.layer
        self.heads = self.layers[0].crossattention.self.num_attention_heads
        self.head_dim = self.layers[0].crossattention.self.attention_head_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_kv: torch.Tensor) -> torch.Tensor:
        q, length = input_ids.shape
        b = image_kv.shape[1]
        h, d = self.heads, self.head_dim
        hidden = self.embeddings(input_ids=input_ids)
        self_mask = additive_mask(attention_mask, hidden.dtype).repeat(b, 1, 1, 1)
        dim = hidden.shape[-1]
        # explicit sizes, no -1: OpenVINO's converter mis-infers a -1 next to a dynamic batch dimension
        hidden = hidden.unsqueeze(0).expand(b, q, length, dim).reshape(b * q, length, dim)
        scale = math.sqrt(d)
        for i, layer in enumerate(self.layers):
            attention_output = layer.attention(hidden, attention_mask=self_mask)[0]
            cross = layer.crossattention
            # All Q questions of a frame share its image K/V: one [Q*L, T] score matrix per frame and head.
            query = cross.self.query(attention_output).view(b, q, length, h, d)
            query = query.permute(0, 3, 1, 2, 4).reshape(b, h, q * length, d)
            scores = torch.matmul(query, image_kv[2 * i].transpose(-1, -2)) / scale
            probs = nn.functional.softmax(scores, dim=-1)
            context = torch.matmul(probs, image_kv[2 * i + 1])
            context = context.view(b, h, q, length, d).permute(0, 2, 3, 1, 4).reshape(b * q, length, h * d)
            attention_output = cross.output(context, attention_output)
            hidden = layer.feed_forward_chunk(attention_output)
        return hidden.view(b, q, length, dim)


class DecoderStage(nn.Module):
    answer_weight: torch.Tensor
    answer_bias: torch.Tensor
    bos_ids: torch.Tensor

    """(question_embeds [B,Q,L,D], question mask [Q,L]) -> p_yes [B,Q] (fp32), first decoder step after [DEC].

    p_yes = exp(l_yes) / (exp(l_yes) + exp(l_no)) where l = log_softmax(first-step logits); the full-vocab
    normalizer cancels, so only the "yes" and "no" rows of the LM head are computed. The stock cross-attention
    drops its mask (padded questions would change the answer), so this stage applies the question mask
    itself, reusing the layer's query/key/value/output modules: equal to each question alone, unpadded.
    """

    def __init__(self, model: BlipForQuestionAnswering, yes_id: int, no_id: int) -> None:
        super().__init__()
        decoder = model.text_decoder
        self.embeddings = decoder.bert.embeddings
        self.layers = decoder.bert.encoder.layer
        self.transform = decoder.cls.predictions.transform
        self.heads = self.layers[0].crossattention.self.num_attention_heads
        self.head_dim = self.layers[0].crossattention.self.attention_head_size
        head = decoder.cls.predictions.decoder
        rows = torch.tensor([yes_id, no_id])
        self.register_buffer("answer_weight", head.weight.detach()[rows].clone())
        self.register_buffer("answer_bias", head.bias.detach()[rows].clone())
        self.register_buffer("bos_ids", torch.tensor([[model.decoder_start_token_id]]))

    def forward(self, question_embeds: torch.Tensor, question_mask: torch.Tensor) -> torch.Tensor:
        b, q, length, dim = question_embeds.shape
        n, h, d = b * q, self.heads, self.head_dim
        embeds = question_embeds.reshape(n, length, dim)
        mask = additive_mask(question_mask, embeds.dtype).repeat(b, 1, 1, 1)
        hidden = self.embeddings(input_ids=self.bos_ids.expand(n, 1))
        scale = math.sqrt(d)
        for layer in self.layers:
            attention_output = layer.attention(hidden)[0]  # one token: attends to itself only
            cross = layer.crossattention.self
            query = cross.query(attention_output).view(n, 1, h, d).transpose(1, 2)
            key = cross.key(embeds).view(n, length, h, d).transpose(1, 2)
            value = cross.value(embeds).view(n, length, h, d).transpose(1, 2)
            scores = torch.matmul(query, key.transpose(-1, -2)) / scale + mask
            context = torch.matmul(nn.functional.softmax(scores, dim=-1), value)
            context = context.transpose(1, 2).reshape(n, 1, h * d)
            attention_output = layer.crossattention.output(context, attention_output)
            hidden = layer.feed_forward_chunk(attention_output)
        hidden = self.transform(hidden[:, 0])
        logits = nn.functional.linear(hidden, self.answer_weight, self.answer_bias).float()
        return nn.functional.softmax(logits, dim=-1)[:, 0].view(b, q)


class StagedBlip(nn.Module):
    """The three stages of one model, with the yes/no ids; calling it runs them eagerly (for tests)."""

    def __init__(self, model: BlipForQuestionAnswering, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.yes_id, self.no_id = yes_no_ids(tokenizer)
        self.vision = VisionStage(model).eval()
        self.text = TextEncoderStage(model).eval()
        self.decoder = DecoderStage(model, self.yes_id, self.no_id).eval()

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """p_yes [B, Q] for B frames and Q right-padded questions (mask 1 = real token)."""
        return self.decoder(self.text(input_ids, mask, self.vision(pixel_values)), mask)


class Int8Linear(nn.Module):
    """A dynamically quantized int8 copy of a linear (weights int8 per tensor, activations quantized per call).

    Takes and returns tensors of any float dtype; computes in int8 with fp32 accumulation (oneDNN/fbgemm,
    VNNI where the CPU has it). CPU only.
    """

    def __init__(self, linear: Any) -> None:
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization import default_dynamic_qconfig

        fp32 = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            fp32.weight.copy_(linear.weight.float())
            if linear.bias is not None:
                fp32.bias.copy_(linear.bias.float())
        fp32.qconfig = default_dynamic_qconfig  # type: ignore[assignment]
        self.linear = DynamicLinear.from_float(fp32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 out (the caller casts back), so that a following activation runs on the int8 result unrounded."""
        return self.linear(x.float())


class Int8VisionStage(nn.Module):
    """VisionStage with every linear of the vision encoder and the image K/V projections in dynamic int8.

    Same inputs and outputs as VisionStage. The stock embeddings, layer norms, GELU and the attention's
    score/softmax/context matmuls run in the stage's dtype (bf16); only the GEMMs of the linears (about 90 %
    of the stage's FLOPs) go to int8. The encoder layers are run here, reusing the stock modules' weights
    (quantized copies for the linears), in the order of transformers' BlipEncoderLayer/BlipAttention.
    """

    def __init__(self, vision: VisionStage) -> None:
        super().__init__()
        self.vision_model = vision.vision_model
        self.heads, self.head_dim = vision.heads, vision.head_dim
        layers: Any = self.vision_model.encoder.layers
        self.qkv = nn.ModuleList(Int8Linear(layer.self_attn.qkv) for layer in layers)
        self.projection = nn.ModuleList(Int8Linear(layer.self_attn.projection) for layer in layers)
        self.fc1 = nn.ModuleList(Int8Linear(layer.mlp.fc1) for layer in layers)
        self.fc2 = nn.ModuleList(Int8Linear(layer.mlp.fc2) for layer in layers)
        self.image_kv = Int8Linear(vision.image_kv)
        self.layers = len(vision.keys)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vm: Any = self.vision_model
        hidden = vm.embeddings(pixel_values)
        dtype = hidden.dtype
        layer: Any
        for i, layer in enumerate(vm.encoder.layers):
            attn = layer.self_attn
            b, t, e = hidden.shape
            qkv = self.qkv[i](layer.layer_norm1(hidden)).to(dtype)
            qkv = qkv.reshape(b, t, 3, attn.num_heads, e // attn.num_heads).permute(2, 0, 3, 1, 4)
            scores = torch.matmul(qkv[0], qkv[1].transpose(-1, -2)) * attn.scale
            context = torch.matmul(nn.functional.softmax(scores, dim=-1), qkv[2]).permute(0, 2, 1, 3)
            hidden = self.projection[i](context.reshape(b, t, e)).to(dtype) + hidden
            mlp = layer.mlp
            hidden = self.fc2[i](mlp.activation_fn(self.fc1[i](layer.layer_norm2(hidden)))).to(dtype) + hidden
        image_embeds = vm.post_layernorm(hidden)
        return split_kv(self.image_kv(image_embeds).to(dtype), self.layers, self.heads, self.head_dim)
