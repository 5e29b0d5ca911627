"""`petstream bench scaleout`: ingest capacity with 1 and 2 worker processes, the Ray tier's overhead per frame
against the local engine, and the pinned ingest_vs_decode_limit, measured side by side in one run."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.load import encode_clip, machine_info
from bench.pinned import run_pinned
from bench.pipeline import Params, _compile, _ingest_once, small_model
from simulators.fleet import server_process
from simulators.video import CAMERA_LIKE


@dataclass(frozen=True)
class ScaleoutParams:
    """Sizes of every phase; `quick_params()` shrinks them for the smoke test (numbers then mean nothing)."""

    quick: bool = False
    width: int = 1280
    height: int = 720
    clip_s: float = 20.0
    cameras: int = 8
    loops: int = 3
    rounds: int = 3  # 1 and 2 workers alternate this many times; medians reported
    ray_rounds: int = 20  # local and Ray batches alternate this many times per batch size
    ray_batch_sizes: tuple[int, ...] = (1, 8)

    @classmethod
    def quick_params(cls) -> ScaleoutParams:
        return cls(quick=True, width=320, height=180, clip_s=2.0, cameras=2, loops=1, rounds=1, ray_rounds=3)


async def _ingest(target: str, clip: list, p: ScaleoutParams, log: str, tag: str) -> dict[str, object]:
    return await _ingest_once(target, clip, p.cameras, "rate", p.loops, log, tag)


def workers_phase(p: ScaleoutParams, art_args: list[str], log_dir: Path) -> dict[str, object]:
    """Both servers run at once (idle between turns), taking turns: a slow spell of the machine hits both."""
    clip = encode_clip(1, width=p.width, height=p.height, seconds=p.clip_s, still_fraction=0.85, profile=CAMERA_LIKE)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    log1, log2 = str(log_dir / "server-1-worker.log"), str(log_dir / "server-2-workers.log")
    with (
        server_process([*art_args, "--workers", "1"], log_path=log1, timeout_s=300) as one,
        server_process([*art_args, "--workers", "2"], log_path=log2, timeout_s=300) as two,
    ):
        for r in range(p.rounds):
            runs[1].append(asyncio.run(_ingest(one, clip, p, log1, f"w1r{r}")))
            runs[2].append(asyncio.run(_ingest(two, clip, p, log2, f"w2r{r}")))
    fps = {w: statistics.median(x["fps"] for x in rs if not x["errors"]) for w, rs in runs.items()}
    return {
        "clip": {"width": p.width, "height": p.height, "fps": 15, "frames": len(clip), "encoding": "camera-like"},
        "cameras": p.cameras,
        "ingest_fps_1_worker": round(fps[1], 1),
        "ingest_fps_2_workers": round(fps[2], 1),
        "ingest_streams_1_worker": round(fps[1] / 15, 2),
        "ingest_streams_2_workers": round(fps[2] / 15, 2),
        "two_workers_vs_one": round(fps[2] / fps[1], 3) if fps[1] else None,
        "raw": {str(k): v for k, v in runs.items()},
    }


def ray_phase(p: ScaleoutParams, model: str, artifacts: str | None) -> dict[str, object]:
    """The same batches through the local engine and through one Ray Serve replica of the same engine (one torch
    thread each), alternating; overhead per frame = (median Ray batch - median local batch) / frames."""
    import numpy as np

    from inference import ray_tier
    from inference.engine import load_engine
    from inference.pools import PoolSpec
    from inference.types import DEFAULT_QUESTIONS, VQARequest

    sizes = tuple(sorted({1, 2, 4, 8, *p.ray_batch_sizes}))
    local = load_engine(model, artifacts=artifacts, batch_sizes=sizes, threads=1)
    t0 = time.monotonic()
    ray_tier.connect(None, num_cpus=2)
    spec = PoolSpec("bench", artifacts=artifacts, threads=1, num_cpus=1)
    remote = ray_tier.connect_pools([spec], model, sizes, deploy=True)["bench"][1]
    started_s = time.monotonic() - t0
    try:
        img = np.random.default_rng(0).integers(0, 255, (local.image_size, local.image_size, 3), np.uint8)
        times: dict[str, dict[int, list[float]]] = {"local": {}, "ray": {}}
        for bs in p.ray_batch_sizes:
            batch = [VQARequest(i, img, DEFAULT_QUESTIONS) for i in range(bs)]
            local.run(batch)
            remote.run(batch)  # warm-up both
            for _ in range(p.ray_rounds):
                for name, engine in (("local", local), ("ray", remote)):
                    t = time.perf_counter()
                    engine.run(batch)
                    times[name].setdefault(bs, []).append((time.perf_counter() - t) * 1e3)
                    # the Ray result must match the local one: it is the same engine
        diff = max(
            abs(a - b)
            for x, y in zip(local.run(batch), remote.run(batch), strict=True)
            for a, b in zip(x.p_yes.values(), y.p_yes.values(), strict=True)
        )
    finally:
        ray_tier.shutdown()
        local.close()
    per_size = {}
    for bs in p.ray_batch_sizes:
        lm, rm = statistics.median(times["local"][bs]), statistics.median(times["ray"][bs])
        per_size[str(bs)] = {
            "local_batch_ms": round(lm, 2),
            "ray_batch_ms": round(rm, 2),
            "overhead_ms_per_frame": round((rm - lm) / bs, 2),
            "ray_vs_local": round(rm / lm, 3),
        }
    return {
        "model": model,
        "compiled": artifacts is not None,
        "image_size": local.image_size,
        "payload_bytes_per_frame": local.image_size**2 * 3,
        "serve_wait_ms": spec.serve_wait_ms,  # @serve.batch waits this long for company when a batch is not full
        "ray_start_and_deploy_s": round(started_s, 1),
        "max_abs_p_yes_diff": diff,
        "by_batch_size": per_size,
        "raw_ms": {k: {str(b): [round(x, 2) for x in v] for b, v in d.items()} for k, d in times.items()},
    }


def run_scaleout(p: ScaleoutParams) -> dict[str, object]:
    log_dir = Path(tempfile.mkdtemp(prefix="petstream-scaleout-"))
    t0 = time.monotonic()
    result: dict[str, object] = {"machine": machine_info(), "params": asdict(p)}
    small = small_model()
    art = None if p.quick else log_dir / "small-art"
    art_args = ["--model", small, *(_compile(small, art) if art else [])]
    result["model"] = small
    result["ray"] = ray_phase(p, small, str(art) if art else None)
    result["workers"] = workers_phase(p, art_args, log_dir)
    pinned_p = Params.quick_params() if p.quick else Params()
    pinned_p = replace(pinned_p, rounds=max(2, pinned_p.rounds) if not p.quick else 1)
    pinned = run_pinned(pinned_p, str(log_dir / "pinned"), latency=False)
    result["pinned"] = {k: pinned[k] for k in ("pin", "ingest", "summary")}
    ray8 = result["ray"]["by_batch_size"].get(str(max(p.ray_batch_sizes)), {})  # type: ignore[index]
    result["summary"] = {
        "ingest_streams_1_worker": result["workers"]["ingest_streams_1_worker"],  # type: ignore[index]
        "ingest_streams_2_workers": result["workers"]["ingest_streams_2_workers"],  # type: ignore[index]
        "two_workers_vs_one": result["workers"]["two_workers_vs_one"],  # type: ignore[index]
        "ray_overhead_ms_per_frame": {b: v["overhead_ms_per_frame"] for b, v in result["ray"]["by_batch_size"].items()},  # type: ignore[index]
        "ray_vs_local_at_largest_batch": ray8.get("ray_vs_local"),
        "ray_max_abs_p_yes_diff": result["ray"]["max_abs_p_yes_diff"],  # type: ignore[index]
        "pinned_ingest_vs_decode_limit": pinned["summary"]["ingest_vs_decode_limit"],  # type: ignore[index]
        "pinned_server_ingest_cpu_vs_pyav": pinned["summary"]["server_ingest_cpu_vs_pyav"],  # type: ignore[index]
    }
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    result["server_logs"] = str(log_dir)
    return result


def main(json_path: str | None, quick: bool) -> int:
    p = ScaleoutParams.quick_params() if quick else ScaleoutParams()
    result = run_scaleout(p)
    summary: dict[str, Any] = result["summary"]  # type: ignore[assignment]
    for key, value in summary.items():
        print(f"{key:<36} {value}", flush=True)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {json_path}")
    return 0
