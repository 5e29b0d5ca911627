"""Frames (uint8 RGB, any size) -> normalized pixel_values, matching BlipImageProcessor's fp32 arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def resize_frame(image: np.ndarray, size: int) -> np.ndarray:
    """Squash to size x size like BlipImageProcessor (aspect not kept); frames already that size are untouched.

    cv2's INTER_AREA is used (fast, alias-free downscaling); it differs slightly from the processor's PIL
    bicubic, so callers that need bit-exact processor pixels pre-scale frames to `size`.
    """
    if image.shape[0] == size and image.shape[1] == size:
        return image
    import cv2  # only when a frame needs resizing

    shrinking = image.shape[0] >= size and image.shape[1] >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def to_pixel_values(
    images: Sequence[np.ndarray], size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """[B,3,size,size] float32: x / 255, then (x - mean) / std per channel, as the processor computes it."""
    batch = np.stack([np.ascontiguousarray(resize_frame(im, size)) for im in images])
    x = torch.from_numpy(batch).to(torch.float32).permute(0, 3, 1, 2)
    x = x * (1 / 255)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()
