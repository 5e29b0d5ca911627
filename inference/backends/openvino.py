"""OpenVINO backend: the stages converted with openvino.convert_model at fixed shapes, saved as IR, run on the CPU.

int8 is NNCF post-training quantization calibrated on real frames (the calibration inputs come from the caller);
the precision of everything not quantized is the CPU plugin's inference precision hint (bf16 where the CPU has
it natively). Only this module imports openvino and nncf, behind an import guard (`pip install '.[openvino]'`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from inference.backends.base import Backend, BackendUnavailable, BucketInputs, register_backend
from inference.cpufeatures import cpu_has_fast_bf16

INSTALL_HINT = (
    "backend 'openvino' needs the optional OpenVINO packages: pip install 'petstream[openvino]' "
    "(openvino, and nncf for int8)"
)


def import_module(name: str) -> ModuleType:
    """Import openvino or nncf, or raise BackendUnavailable saying how to install them."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailable(f"{INSTALL_HINT} (import {name} failed: {exc})") from exc


def precision_hint(dtype: str, has_bf16: bool | None = None) -> str:
    """The CPU plugin's INFERENCE_PRECISION_HINT for a petstream dtype.

    fp32 -> f32; bf16 -> bf16; int8 -> bf16 for the ops NNCF left in float where the CPU computes bf16
    natively, else f32 (the quantized ops run in int8 either way)."""
    if dtype == "fp32":
        return "f32"
    if dtype == "bf16":
        return "bf16"
    if dtype == "int8":
        return "bf16" if (cpu_has_fast_bf16() if has_bf16 is None else has_bf16) else "f32"
    raise ValueError(f"dtype={dtype!r} is not one of fp32, bf16, int8")


class OpenVinoStage:
    """A compiled OpenVINO model called like a TorchScript stage: CPU torch tensors in, one torch tensor out.

    Inputs and the output are shared with the runtime, not copied: the output stays valid until this stage
    runs again, which the engine never does before it has consumed it (one caller at a time)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        arrays = [x.detach().contiguous().numpy() for x in inputs]
        self.request.infer(arrays, share_inputs=True, share_outputs=True)
        return torch.from_numpy(self.request.get_output_tensor(0).data)


def _static(inputs: tuple[torch.Tensor, ...]) -> list[list[int]]:
    return [list(x.shape) for x in inputs]


@register_backend("openvino")
class OpenVinoBackend(Backend):
    name = "openvino"
    artifact_suffix = ".xml"

    def __init__(self) -> None:
        self._core: Any = None

    def check_available(self) -> None:
        import_module("openvino")

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def host_dtype(self, dtype: str) -> torch.dtype:
        return torch.float32  # the runtime casts inside (precision hint); eager fallbacks run in fp32

    def core(self) -> Any:
        if self._core is None:
            self._core = import_module("openvino").Core()
        return self._core

    def _convert(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], shapes: list[list[int]]) -> Any:
        ov = import_module("openvino")
        with torch.no_grad():
            return ov.convert_model(module.float().eval(), example_input=inputs, input=shapes)

    def trace(self, module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], *, dtype: str) -> Any:
        """Convert the unmodified stage at the static shapes of `example_inputs` (IR weights stay fp32)."""
        return self._convert(module, example_inputs, _static(example_inputs))

    def trace_buckets(
        self,
        module: torch.nn.Module,
        buckets: BucketInputs,
        *,
        dtype: str,
        batch: tuple[int, int],
        calibration: Sequence[tuple[torch.Tensor, ...]] | None = None,
    ) -> dict[int, Any]:
        """Convert once with the batch dimension left open, quantize once with NNCF when int8 and given
        calibration inputs, then fix every batch size's shapes on a copy: each bucket is a static-shape IR
        (the CPU plugin's bf16 path needs static shapes) and all carry the same quantization ranges."""
        first = buckets[min(buckets)]
        shapes = _static(first)
        shapes[batch[0]][batch[1]] = -1
        model = self._convert(module, first, shapes)
        if calibration is not None and dtype == "int8":
            model = self._quantize(model, calibration)
        out = {}
        for b, inputs in buckets.items():
            fixed = model.clone()
            fixed.reshape({fixed.inputs[i]: shape for i, shape in enumerate(_static(inputs))})
            out[b] = fixed
        return out

    def _quantize(self, model: Any, calibration: Sequence[tuple[torch.Tensor, ...]]) -> Any:
        nncf = import_module("nncf")
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )

        dataset = nncf.Dataset([tuple(x.detach().float().numpy() for x in sample) for sample in calibration])
        # TRANSFORMER: the attention matmuls are quantized too; softmax and layer norms stay float. SmoothQuant
        # is off: on blip-base it tripled the text encoder's p_yes error (0.0143 vs 0.0059) and did not help
        # the vision stage (0.0072 vs 0.0069), held-out scene frames, docs/inference.md
        return nncf.quantize(
            model,
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
            advanced_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)
            ),
        )

    def save(self, compiled: object, path: Path) -> list[Path]:
        ov = import_module("openvino")
        ov.save_model(compiled, str(path), compress_to_fp16=False)  # fp16 weights would cost fidelity
        return [path, path.with_suffix(".bin")]

    def load(self, path: Path, *, dtype: str) -> Callable[..., torch.Tensor]:
        core = self.core()
        config = {
            "INFERENCE_PRECISION_HINT": precision_hint(dtype),
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
            "INFERENCE_NUM_THREADS": self.threads or len(os.sched_getaffinity(0)),
        }
        if self.threads:  # the caller sized (and may have pinned) the model's threads: OpenVINO's own pinning
            config["ENABLE_CPU_PINNING"] = False  # would move them to cores of its choosing (serve --pin)
        return OpenVinoStage(core.compile_model(core.read_model(str(path)), "CPU", config))

    def versions(self) -> dict[str, str]:
        ov = import_module("openvino")
        return {**super().versions(), "openvino": str(ov.get_version())}
