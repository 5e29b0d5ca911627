"""Peer runtimes for the vision stage, measured beside petstream: ONNX Runtime (fp32, dynamic int8) and OpenVINO
as it comes (convert_model, the CPU plugin's default precision). Each runs the same stage (vision model + image
K/V), so their output feeds petstream's fp32 text stages and their p_yes is compared like petstream's."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Peer:
    """One contender for the vision stage: pixel_values [1,3,S,S] fp32 in, image K/V out (numpy)."""

    label: str
    run: Callable[[np.ndarray], np.ndarray]
    setup_s: float
    what: str


def onnxruntime_peers(vision: torch.nn.Module, pixels: torch.Tensor, workdir: Path, threads: int) -> list[Peer]:
    """ONNX Runtime fp32 and int8 (quantize_dynamic: int8 weights, activations quantized per call), all graph
    optimizations, `threads` intra-op threads."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    t0 = time.perf_counter()
    fp32_path, int8_path = workdir / "vision.onnx", workdir / "vision_int8.onnx"
    with torch.no_grad():
        torch.onnx.export(
            vision.float().eval(),
            (pixels,),
            str(fp32_path),
            input_names=["pixel_values"],
            output_names=["image_kv"],
            opset_version=17,
            dynamo=False,
        )
    export_s = time.perf_counter() - t0
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    quant_s = time.perf_counter() - t0 - export_s
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    out = []
    for label, path, setup, what in (
        ("onnxruntime-fp32", fp32_path, export_s, "torch.onnx.export, ORT CPU, all graph optimizations"),
        ("onnxruntime-int8", int8_path, export_s + quant_s, "ORT quantize_dynamic (QInt8 weights), ORT CPU"),
    ):
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def run(x: np.ndarray, session: ort.InferenceSession = session) -> np.ndarray:
            return session.run(None, {"pixel_values": x})[0]

        out.append(Peer(label, run, setup, what))
    return out


def openvino_default_peer(vision: torch.nn.Module, pixels: torch.Tensor, threads: int) -> Peer:
    """OpenVINO out of the box: convert_model of the stage, compiled with the CPU plugin's default precision
    (bf16 on a CPU with AVX-512 BF16 or AMX), latency hint."""
    import openvino as ov

    t0 = time.perf_counter()
    with torch.no_grad():
        model = ov.convert_model(vision.float().eval(), example_input=(pixels,), input=[list(pixels.shape)])
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer([x])
        return request.get_output_tensor(0).data.copy()

    return Peer("openvino-default", run, time.perf_counter() - t0, "convert_model, CPU plugin default precision")


def threads_in_use() -> int:
    return torch.get_num_threads() or len(os.sched_getaffinity(0))
