"""CPU backend: eager modules or TorchScript artifacts from torch.jit.trace, frozen for inference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from inference.backends.base import Backend, register_backend


@register_backend("cpu")
class CpuBackend(Backend):
    name = "cpu"

    def check_available(self) -> None:
        return None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def trace(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *, dtype: str) -> Any:
        with torch.no_grad():
            traced = torch.jit.trace(module.eval(), example_inputs, check_trace=False)
            return torch.jit.freeze(traced)

    def load(self, path: Path, *, dtype: str) -> Callable[..., torch.Tensor]:
        return torch.jit.load(str(path), map_location=self.device)
