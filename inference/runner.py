"""Calls one stage: its compiled artifact for the input shapes (batch padded up to a bucket), else eager."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Signature = tuple[tuple[tuple[int, ...], str], ...]


@dataclass(frozen=True)
class BatchLayout:
    """Which input carries the batch dimension (and which dim it is), and the output's batch dim."""

    batch_input: int
    batch_dim: int
    out_dim: int = 0


#: the stages' layouts: vision(pixel_values), text(input_ids, mask, image_kv), decoder(question_embeds, mask)
LAYOUTS = {
    "vision": BatchLayout(batch_input=0, batch_dim=0, out_dim=1),
    "text": BatchLayout(batch_input=2, batch_dim=1, out_dim=0),
    "decoder": BatchLayout(batch_input=0, batch_dim=0, out_dim=0),
}


def signature(inputs: tuple[torch.Tensor, ...], layout: BatchLayout) -> Signature:
    """Input shapes and dtypes with the batch dimension left out (-1): what a compiled artifact is keyed by."""
    out = []
    for i, x in enumerate(inputs):
        shape = list(x.shape)
        if i == layout.batch_input:
            shape[layout.batch_dim] = -1
        out.append((tuple(shape), str(x.dtype).removeprefix("torch.")))
    return tuple(out)


def pad_batch(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Grow dim `dim` to `size` by repeating the first row (real data, so padding can't produce NaNs)."""
    n = x.shape[dim]
    if n == size:
        return x
    shape = list(x.shape)
    shape[dim] = size - n
    return torch.cat([x, x.narrow(dim, 0, 1).expand(shape)], dim=dim)


class StageRunner:
    """One stage: compiled artifacts keyed by (batch size, signature), falling back to the eager module."""

    def __init__(self, name: str, eager: Callable[..., torch.Tensor]) -> None:
        self.name = name
        self.layout = LAYOUTS[name]
        self.eager = eager
        self.compiled: dict[tuple[int, Signature], Callable[..., torch.Tensor]] = {}
        self.calls = {"compiled": 0, "eager": 0}

    def add(self, batch_size: int, sig: Signature, fn: Callable[..., torch.Tensor]) -> None:
        self.compiled[(batch_size, sig)] = fn

    def bucket(self, inputs: tuple[torch.Tensor, ...]) -> int | None:
        """The smallest compiled batch size that fits these inputs, or None (then the stage runs eagerly)."""
        lay = self.layout
        n = inputs[lay.batch_input].shape[lay.batch_dim]
        sig = signature(inputs, lay)
        sizes = [b for (b, s) in self.compiled if s == sig and b >= n]
        return min(sizes) if sizes else None

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Run the stage; returns the output for the real rows only and the batch size actually run."""
        lay = self.layout
        n = inputs[lay.batch_input].shape[lay.batch_dim]
        size = self.bucket(inputs)
        if size is None:
            self.calls["eager"] += 1
            return self.eager(*inputs), n
        self.calls["compiled"] += 1
        padded = list(inputs)
        padded[lay.batch_input] = pad_batch(inputs[lay.batch_input], lay.batch_dim, size)
        out = self.compiled[(size, signature(inputs, lay))](*padded)
        rows_per_item = out.shape[lay.out_dim] // size
        return out.narrow(lay.out_dim, 0, n * rows_per_item), size
