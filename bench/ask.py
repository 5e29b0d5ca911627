"""`petstream bench ask`: a server started with its defaults answers Ask, against the HF generate() loop, one run.

The server is `petstream serve --model M` with no other flags (its compiled stages come from the cache, or are
built on this first start: the start-up time is reported); each image (a simulator scene through H.264, as a
JPEG) is asked the server's three default questions over gRPC, and the baseline runs BlipProcessor +
generate(max_new_tokens=2) per question on the same image in this process, interleaved image by image.
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def run_ask_bench(
    model: str = "blip-base-random",
    *,
    images: int = 6,
    server_args: tuple[str, ...] = (),
    json_out: str | None = None,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    import grpc
    import torch
    from PIL import Image

    from bench.inference import machine_info, scene_frames
    from inference.engine import set_threads
    from inference.models import load_model
    from inference.types import DEFAULT_QUESTIONS
    from protos.petstream.v1 import petstream_pb2 as pb
    from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
    from simulators.fleet import server_process

    set_threads(None)
    hf, processor = load_model(model)
    size = int(processor.image_processor.size["height"])
    frames = scene_frames(images, size)
    jpegs = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=95)
        jpegs.append(buf.getvalue())

    def baseline(im: np.ndarray) -> None:
        for q in DEFAULT_QUESTIONS:
            inputs = processor(images=im, text=q.text, return_tensors="pt")
            hf.generate(**inputs, max_new_tokens=2)

    async def ask(stub: Any, data: bytes) -> Any:
        return await stub.Ask(pb.AskRequest(image=data))

    log_path = Path(tempfile.mkdtemp(prefix="petstream-ask-")) / "server.log"
    t0 = time.perf_counter()
    ask_s: list[float] = []
    base_s: list[float] = []
    with server_process(["--model", model, *server_args], log_path=str(log_path), timeout_s=1800) as address:
        startup_s = time.perf_counter() - t0
        print_fn(f"server with defaults up in {startup_s:.0f} s at {address}")

        async def session() -> None:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.BehaviorStreamStub(channel)
                await ask(stub, jpegs[0])  # warm-up, both sides
                with torch.inference_mode():
                    baseline(frames[0])
                for i, data in enumerate(jpegs):
                    t = time.perf_counter()
                    reply = await ask(stub, data)
                    ask_s.append(time.perf_counter() - t)
                    assert len(reply.p_yes) == len(DEFAULT_QUESTIONS), reply
                    t = time.perf_counter()
                    with torch.inference_mode():
                        baseline(frames[i])
                    base_s.append(time.perf_counter() - t)
                    print_fn(f"  image {i}: Ask {1e3 * ask_s[-1]:.0f} ms, generate loop {1e3 * base_s[-1]:.0f} ms")

        asyncio.run(session())
    chosen = [
        line.split("INFO ", 1)[-1]
        for line in log_path.read_text().splitlines()
        if "inference:" in line or " why: " in line
    ]
    result: dict[str, Any] = {
        "benchmark": "ask-defaults",
        "model": model,
        "images": images,
        "questions": len(DEFAULT_QUESTIONS),
        "server": f"petstream serve --model {model} {' '.join(server_args)}".strip(),
        "server_startup_s": startup_s,
        "server_chosen_settings": chosen,
        "baseline": "BlipProcessor + generate(max_new_tokens=2) per question, fp32, same images, same machine",
        "ask_ms_median": 1e3 * statistics.median(ask_s),
        "generate_loop_ms_median": 1e3 * statistics.median(base_s),
        "speedup": statistics.median(base_s) / statistics.median(ask_s),
        "speedup_median_per_image": statistics.median(b / a for a, b in zip(ask_s, base_s, strict=True)),
        "ask_ms": [1e3 * x for x in ask_s],
        "generate_loop_ms": [1e3 * x for x in base_s],
        "target_speedup": 8.0,
        "machine": machine_info("cpu"),
    }
    result["met"] = result["speedup"] >= result["target_speedup"]
    for line in chosen:
        print_fn(f"server: {line}")
    print_fn(
        f"Ask (defaults) {result['ask_ms_median']:.0f} ms vs generate loop {result['generate_loop_ms_median']:.0f} ms: "
        f"{result['speedup']:.2f}x (target 8x: {'met' if result['met'] else 'not met'})"
    )
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
        print_fn(f"wrote {json_out}")
    return result
