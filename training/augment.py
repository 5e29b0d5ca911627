"""On-the-fly batch augmentation (shift, scale, flip, colour, noise) and the processor's normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# OpenAI CLIP statistics: what BlipImageProcessor normalises with
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(
    images: torch.Tensor, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD
) -> torch.Tensor:
    """uint8 NxHxWx3 (or float 0..1 Nx3xHxW) -> normalised float Nx3xHxW, like BlipImageProcessor."""
    x = images.permute(0, 3, 1, 2).float() / 255.0 if images.dtype == torch.uint8 else images
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def augment(images: torch.Tensor, gen: torch.Generator, max_shift_px: float = 4.0) -> torch.Tensor:
    """uint8 NxHxWx3 -> augmented, normalised float Nx3xHxW; labels are unchanged by every transform."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    n, _, h, _ = x.shape
    scale = torch.empty(n).uniform_(0.9, 1.1, generator=gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift_px / h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale * torch.empty(n).uniform_(0.95, 1.05, generator=gen)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = torch.empty(n, 3, 1, 1).uniform_(0.85, 1.15, generator=gen) * torch.empty(n, 1, 1, 1).uniform_(
        0.8, 1.2, generator=gen
    )
    bias = torch.empty(n, 1, 1, 1).uniform_(-0.06, 0.06, generator=gen)
    x = x * gain + bias
    x = x + torch.randn(x.shape, generator=gen) * torch.empty(n, 1, 1, 1).uniform_(0.0, 0.025, generator=gen)
    return normalize(x.clamp(0.0, 1.0))
