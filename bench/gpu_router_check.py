"""The `cuda` pool through the router, for bench/gpu_check.sh: weights to cuda, a live switch to cpu and back, and
failover to cpu when cuda fails; p_yes of both pools compared. Writes JSON; exits non-zero if a check fails."""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main(out_path: str, model: str = "tiny", primary: str = "cuda") -> int:
    """`primary` cuda (the GPU check) or cpu (a dry run of this script on a machine without a GPU)."""
    from inference.pools import PoolSpec
    from inference.tier import build_router
    from inference.types import DEFAULT_QUESTIONS, VQARequest

    name = "cuda" if primary == "cuda" else "cpu-bf16"
    pools = [PoolSpec(name, backend=primary, dtype="bf16"), PoolSpec("cpu-fp32", dtype="fp32")]  # type: ignore[arg-type]
    router = build_router(inference="local", pools=pools, model=model, batch_sizes=(1, 2, 4, 8), weights={name: 1})
    size = router.image_size
    images = [np.random.default_rng(i).integers(0, 255, (size, size, 3), np.uint8) for i in range(8)]
    batch = [VQARequest(i, img, DEFAULT_QUESTIONS) for i, img in enumerate(images)]
    checks: dict[str, object] = {}
    t = time.perf_counter()
    on_cuda = router.run(batch)
    checks["cuda_batch_ms"] = round((time.perf_counter() - t) * 1e3, 1)
    checks["served_by_primary"] = {r.pool for r in on_cuda} == {name}
    router.set_weights({"cpu-fp32": 1})
    on_cpu = router.run(batch)
    checks["switched_to_cpu"] = {r.pool for r in on_cpu} == {"cpu-fp32"}
    diff = max(abs(a.p_yes[q] - b.p_yes[q]) for a, b in zip(on_cuda, on_cpu, strict=True) for q in a.p_yes)
    checks["max_abs_p_yes_diff_primary_bf16_vs_cpu_fp32"] = diff
    checks["fidelity_ok"] = diff <= 0.02
    router.set_weights({name: 1})
    cuda_engine = router._pools[name].engine  # noqa: SLF001 - a drill: break the cuda pool on purpose
    real_run = cuda_engine.run
    cuda_engine.run = lambda requests: (_ for _ in ()).throw(RuntimeError("simulated CUDA failure"))  # type: ignore[method-assign]
    failed_over = router.run(batch)
    cuda_engine.run = real_run  # type: ignore[method-assign]
    checks["failed_over_to_cpu"] = {r.pool for r in failed_over} == {"cpu-fp32"}
    checks["snapshot"] = router.snapshot()
    ok = all(checks[k] for k in ("served_by_primary", "switched_to_cpu", "fidelity_ok", "failed_over_to_cpu"))
    checks["ok"] = ok
    with open(out_path, "w") as f:
        json.dump(checks, f, indent=2, default=str)
    print(json.dumps({k: v for k, v in checks.items() if k != "snapshot"}, default=str))
    router.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
