"""A small CNN teacher: learns the scenes fast, then lends its patch-grid features to the BLIP encoder."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TeacherCNN(nn.Module):
    """64x64 image -> (feature map Cx(64/patch)x(64/patch) on the student's patch grid, 3 behavior logits)."""

    def __init__(self, channels: int = 128, num_labels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, 24, 2),
            _block(24, 48, 2),
            _block(48, 48, 1),
            _block(48, 96, 2),
            _block(96, channels, 1),
        )
        self.head = nn.Linear(2 * channels, num_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.features(x)
        pooled = torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1)
        return fmap, self.head(pooled)
