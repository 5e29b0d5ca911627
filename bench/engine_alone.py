"""The inference engine alone, in a fresh process like the server's: `python -m bench.engine_alone MODEL ...`."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def engine_alone(engine: object, batches: int, max_batch: int) -> dict[str, object]:
    """Full batches of one frame size straight into Engine.run: frames/s and batch service times."""
    import numpy as np

    from inference.types import DEFAULT_QUESTIONS, VQARequest

    size = engine.image_size  # type: ignore[attr-defined]
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    requests = [VQARequest(i, image, DEFAULT_QUESTIONS) for i in range(max_batch)]
    engine.run(requests[:1])  # type: ignore[attr-defined]  # warm-up
    times = []
    t0 = time.perf_counter()
    for _ in range(batches):
        t = time.perf_counter()
        engine.run(requests)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    return {
        "batches": batches,
        "frames": batches * max_batch,
        "wall_s": round(wall, 3),
        "fps": batches * max_batch / wall,
        "batch_ms_median": round(statistics.median(times) * 1e3, 1),
        "batch_ms": [round(x * 1e3, 1) for x in times],
    }


def run_in_subprocess(
    model: str,
    max_batch: int,
    batches: int,
    timeout_s: float = 600,
    artifacts: str | None = None,
    cpus: tuple[int, ...] = (),
) -> dict[str, object]:
    """Run `engine_alone` in a new interpreter (own GIL, own torch threads, nothing else loaded), as the server is;
    with `artifacts`, on the same compiled stages the server loads; with `cpus`, pinned to them (torch then uses
    that many threads, as a pinned server's model does)."""
    cmd = [sys.executable, "-m", "bench.engine_alone", model, str(max_batch), str(batches)]
    if artifacts:
        cmd += ["--artifacts", artifacts]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False, preexec_fn=pin)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"engine-alone run failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("max_batch", type=int)
    parser.add_argument("batches", type=int)
    parser.add_argument("--artifacts", default=None, help="a `petstream compile` folder (its dtype is used)")
    args = parser.parse_args()
    from inference.engine import load_engine
    from ingest.cli import _batch_sizes

    # with artifacts, dtype "auto" is the manifest's and the batch sizes are the compiled ones, as in the server
    engine = load_engine(args.model, artifacts=args.artifacts, batch_sizes=_batch_sizes(args.max_batch))
    result = engine_alone(engine, args.batches, args.max_batch)
    result["dtype"] = engine.dtype
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
