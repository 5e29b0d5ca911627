"""AWS Inferentia2 backend: torch_neuronx.trace per stage, DataParallel over the NeuronCores (SDK needed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from inference.backends.base import Backend, BackendUnavailable, register_backend

INSTALL_HINT = (
    "backend 'neuron' needs the AWS Neuron SDK on an Inferentia2/Trainium instance. The 'torch-neuronx' "
    "package on PyPI is a placeholder that raises 'WRONG PACKAGE'; install the real wheels from AWS's "
    "repository: pip install --extra-index-url https://pip.repos.neuron.amazonaws.com torch-neuronx "
    "neuronx-cc (see https://awsdocs-neuron.readthedocs-hosted.com, 'PyTorch Neuron setup')."
)


def import_torch_neuronx() -> ModuleType:
    """Import torch_neuronx or raise BackendUnavailable with installation instructions."""
    try:
        return importlib.import_module("torch_neuronx")
    except Exception as exc:  # ImportError, or the PyPI placeholder's "WRONG PACKAGE" error
        raise BackendUnavailable(f"{INSTALL_HINT} (import failed: {type(exc).__name__}: {exc})") from exc


def compiler_args(dtype: str) -> list[str]:
    """neuronx-cc flags: --auto-cast is set explicitly (its documented default changed between releases)."""
    if dtype == "bf16":
        cast = ["--auto-cast", "matmult", "--auto-cast-type", "bf16"]
    else:
        cast = ["--auto-cast", "none"]
    return [*cast, "--model-type=transformer"]


@register_backend("neuron")
class NeuronBackend(Backend):
    name = "neuron"

    def __init__(self, data_parallel: bool = True) -> None:
        self.data_parallel = data_parallel

    def check_available(self) -> None:
        import_torch_neuronx()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # a Neuron artifact takes host tensors and copies them itself

    def host_dtype(self, dtype: str) -> torch.dtype:
        return torch.float32  # neuron artifacts take fp32 and cast inside (--auto-cast)

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        return module  # eager fallback runs on the host CPU

    def trace(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *, dtype: str) -> Any:
        neuronx = import_torch_neuronx()
        # the compiler casts matmuls itself (--auto-cast); the traced module keeps fp32 weights and inputs
        return neuronx.trace(module.float().eval(), example_inputs, compiler_args=compiler_args(dtype))

    def load(self, path: Path, *, dtype: str) -> Callable[..., torch.Tensor]:
        neuronx = import_torch_neuronx()
        module = torch.jit.load(str(path))
        if self.data_parallel:
            # spreads each call's batch over the instance's NeuronCores (2 on an inf2.xlarge)
            return neuronx.DataParallel(module)
        return module

    def versions(self) -> dict[str, str]:
        neuronx = import_torch_neuronx()
        out = {**super().versions(), "torch_neuronx": str(getattr(neuronx, "__version__", "unknown"))}
        try:
            cc = importlib.import_module("neuronxcc")
            out["neuronx_cc"] = str(getattr(cc, "__version__", "unknown"))
        except ImportError:
            pass
        return out
