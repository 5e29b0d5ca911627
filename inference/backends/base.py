"""The backend plugin contract (device placement, trace, save, load, versions) and the backend registry."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

BACKEND_NAMES = ("cpu", "cuda", "neuron", "openvino")

#: example inputs per compiled batch size, e.g. {1: (pixels_b1,), 2: (pixels_b2,)}
BucketInputs = Mapping[int, tuple["torch.Tensor", ...]]


class BackendUnavailable(RuntimeError):
    """The backend's hardware or SDK is missing on this machine; the message says how to get it."""


class Backend(abc.ABC):
    """One way to run the stages: where tensors live and how a stage is compiled, saved and loaded."""

    name: str = ""
    #: file name ending of one saved artifact (the manifest's `file`); extra files are listed by `save`
    artifact_suffix: str = ".pt"
    #: torch threads / runtime threads the stages may use; set by load_engine (None = every core we may use)
    threads: int | None = None

    @abc.abstractmethod
    def check_available(self) -> None:
        """Raise BackendUnavailable (saying what to install or which hardware is missing) if it can't run."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Where inputs go before a stage is called."""

    def host_dtype(self, dtype: str) -> torch.dtype:
        """The float dtype of tensors handed to this backend's stages (eager modules run in it too)."""
        import torch

        return torch.float32 if dtype == "fp32" else torch.bfloat16

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Place an eager module for running on this backend."""
        return module.to(self.device)

    @abc.abstractmethod
    def trace(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *, dtype: str) -> Any:
        """Compile one stage for the fixed shapes and dtypes of `example_inputs`."""

    def trace_buckets(
        self,
        module: torch.nn.Module,
        buckets: BucketInputs,
        *,
        dtype: str,
        batch: tuple[int, int],
        calibration: Sequence[tuple[torch.Tensor, ...]] | None = None,
    ) -> dict[int, Any]:
        """Compile one stage for every batch size of `buckets` (input `batch[0]` carries the batch in dim
        `batch[1]`). `calibration` holds real inputs (batch 1) for backends that quantize statically; the
        others ignore it. The default traces each batch size on its own."""
        return {b: self.trace(module, inputs, dtype=dtype) for b, inputs in buckets.items()}

    def save(self, compiled: object, path: Path) -> list[Path]:
        """Write one artifact at `path`; returns every file written (all of them go into the manifest)."""
        import torch

        torch.jit.save(compiled, str(path))
        return [path]

    @abc.abstractmethod
    def load(self, path: Path, *, dtype: str) -> Callable[..., torch.Tensor]:
        """Load a saved artifact compiled for `dtype`, ready to call with inputs on `device`."""

    def versions(self) -> dict[str, str]:
        """Library versions an artifact depends on; a manifest with other versions is refused."""
        import torch
        import transformers

        return {"torch": torch.__version__, "transformers": transformers.__version__}

    def synchronize(self) -> None:  # noqa: B027 - a no-op where work is synchronous
        """Wait for queued device work (for timings)."""


_REGISTRY: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    def wrap(cls: type[Backend]) -> type[Backend]:
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_backend(name: str) -> Backend:
    """Instantiate a registered backend by name (importing its module lazily)."""
    import importlib

    if name not in BACKEND_NAMES:
        raise ValueError(f"backend={name!r} is not one of {', '.join(BACKEND_NAMES)}")
    if name not in _REGISTRY:
        importlib.import_module(f"inference.backends.{name}")
    return _REGISTRY[name]()


def available_backends(names: Sequence[str] = BACKEND_NAMES) -> list[str]:
    out = []
    for name in names:
        try:
            get_backend(name).check_available()
        except BackendUnavailable:
            continue
        out.append(name)
    return out
