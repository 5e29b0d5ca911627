"""CUDA backend: the same torch.jit workflow as the CPU, with tensors and artifacts on the GPU."""

from __future__ import annotations

import torch

from inference.backends.base import BackendUnavailable, register_backend
from inference.backends.cpu import CpuBackend


@register_backend("cuda")
class CudaBackend(CpuBackend):
    """Traces, freezes, saves and loads exactly as the CPU backend does; only the device differs."""

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

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "cuda": str(torch.version.cuda)}

    def synchronize(self) -> None:
        torch.cuda.synchronize()
