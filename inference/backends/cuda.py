"""CUDA backend: the same torch.jit workflow as the CPU, with tensors and artifacts on the GPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from inference.backends.base import Backend, BackendUnavailable, register_backend


@register_backend("cuda")
class CudaBackend(Backend):
    name = "cuda"

    def check_available(self) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"backend 'cuda' needs a CUDA GPU and a CUDA build of torch; this torch {torch.__version__} "
                "sees no GPU. Use backend 'cpu', or install a CUDA torch wheel on a GPU machine."
            )

    @property
    def device(self) -> torch.device:
        return torch.device("cuda")

    def trace(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *, dtype: str) -> Any:
        with torch.no_grad():
            traced = torch.jit.trace(module.eval(), example_inputs, check_trace=False)
            return torch.jit.freeze(traced)

    def load(self, path: Path) -> Callable[..., torch.Tensor]:
        return torch.jit.load(str(path), map_location=self.device)

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "cuda": str(torch.version.cuda)}

    def synchronize(self) -> None:
        torch.cuda.synchronize()
