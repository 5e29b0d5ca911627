"""Pinned mode of the pipeline benchmark: ingest on one core, the model on another, against PyAV alone on one core.

On a shared 2-core machine an unpinned server lets decoding, gRPC and the model fight over both cores, so neither
ingest nor latency can be read against its baseline. Here the server runs `--pin INGEST:MODEL` (gRPC, sessions
and the decode pool on the ingest core; the model thread and its one torch thread on the model core), the PyAV
baseline decodes on the ingest core with one thread, the engine-alone baseline runs on the model core with one
torch thread, and the load generator (the cameras: elsewhere in service) shares the model's core, not ingest's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.load import decode_baseline, encode_clip, machine_info
from bench.pipeline import Params, _compile, _ingest_once, pipeline_phase, small_model
from bench.targets import latency_targets, target
from ingest.cli import _batch_sizes
from simulators.fleet import server_process
from simulators.video import CAMERA_LIKE


def pin_cores() -> tuple[int, int]:
    """(ingest core, model core): the first two cores this process may use."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise RuntimeError(f"pinned mode needs two cores, this process may use {cores}")
    return cores[0], cores[1]


def thread_affinity(pid: int) -> dict[str, list[str]]:
    """Allowed cores of each thread of `pid` by OS thread name (evidence that the pinning took)."""
    out: dict[str, set[str]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        allowed = next(
            (ln.split(":", 1)[1].strip() for ln in status.splitlines() if ln.startswith("Cpus_allowed_list")), ""
        )
        role = "main" if int(tid) == pid else comm
        out.setdefault(role, set()).add(allowed)
    return {k: sorted(v) for k, v in sorted(out.items())}


async def pinned_ingest(target: str, log_path: str, p: Params, ingest_core: int, model_core: int) -> dict[str, object]:
    """Full-decode ingest of the camera-like 720p clip against PyAV alone on the ingest core (one thread)."""
    from bench.load import child_pids

    clip = encode_clip(
        1,
        width=p.decode_width,
        height=p.decode_height,
        seconds=p.decode_clip_s,
        still_fraction=p.still_fraction,
        profile=CAMERA_LIKE,
    )
    pyav: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for r in range(p.rounds):  # alternate baseline and petstream: slow spells of the shared machine hit both
        os.sched_setaffinity(0, {ingest_core})  # the baseline's decode thread starts here: it inherits the core
        try:
            pyav.append(decode_baseline(clip, threads=1, repeats=p.decode_repeats))
        finally:
            os.sched_setaffinity(0, {model_core})
        runs.append(await _ingest_once(target, clip, p.ingest_cameras, "rate", p.ingest_loops, log_path, f"pin{r}"))
    ok = [x for x in runs if not x["errors"]]
    limit_fps = statistics.median(x["fps"] for x in pyav)
    fps = statistics.median(x["fps"] for x in ok) if ok else 0.0
    pyav_ms = statistics.median(x["cpu_ms_per_frame"] for x in pyav)
    per_frame = [x["server_cpu_ms_per_frame"] for x in ok if x["server_cpu_ms_per_frame"]]
    roles = {k: round(statistics.median(d[k] for d in per_frame), 3) for k in per_frame[0]} if per_frame else {}
    ingest_ms = round(sum(v for k, v in roles.items() if k != "model"), 3)
    servers = child_pids()
    return {
        "cores": {"ingest": ingest_core, "model": model_core, "load_generator": model_core},
        "decode_limit_fps_one_core": round(limit_fps, 1),
        "decode_limit_streams": round(limit_fps / 15, 2),
        "ingest_fps": round(fps, 1),
        "ingest_streams_full_decode": round(fps / 15, 2),
        "ingest_vs_decode_limit": round(fps / limit_fps, 3) if limit_fps else None,
        "pyav_cpu_ms_per_frame": round(pyav_ms, 3),
        "server_cpu_ms_per_frame": roles,  # by thread role: main (gRPC, sessions), decode, model, other
        "server_ingest_cpu_ms_per_frame": ingest_ms,  # everything but the model
        "server_ingest_cpu_vs_pyav": round(ingest_ms / pyav_ms, 3) if pyav_ms else None,
        "thread_affinity": thread_affinity(servers[0]) if len(servers) == 1 else {},
        "raw": {"pyav": pyav, "petstream": runs},
    }


def run_pinned(p: Params, log_dir: str | None = None, *, latency: bool = True) -> dict[str, object]:
    """The pinned ingest phase (small model) and, with `latency`, the pinned latency at 70 % of capacity."""
    log_dir = log_dir or tempfile.mkdtemp(prefix="petstream-pinned-")
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    ingest_core, model_core = pin_cores()
    pin = f"{ingest_core}:{model_core}"
    result: dict[str, object] = {"machine": machine_info(), "params": asdict(p), "pin": pin}
    t0 = time.monotonic()
    small = small_model()
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {model_core})  # the load generator (and every thread it starts) on the model's core
    try:
        small_args = ["--model", small, "--pin", pin]
        if not p.quick:
            small_args += _compile(small, Path(log_dir) / "small-art")
        log_small = str(Path(log_dir) / "server-pinned-small.log")
        with server_process(small_args, log_path=log_small, timeout_s=300) as target:
            result["ingest"] = asyncio.run(pinned_ingest(target, log_small, p, ingest_core, model_core))
        if latency:
            model = p.pipeline_model or small
            art = Path(log_dir) / "pinned-pipeline-art"
            args = [
                "--model",
                model,
                "--pin",
                pin,
                "--max-batch",
                str(p.max_batch),
                "--max-wait-ms",
                str(p.max_wait_ms),
            ]
            artifacts = None
            if not p.quick:
                args += _compile(model, art, ",".join(str(b) for b in _batch_sizes(p.max_batch)))
                artifacts = str(art)
            log_big = str(Path(log_dir) / "server-pinned-pipeline.log")
            with server_process(args, log_path=log_big, timeout_s=300) as target:
                phase = asyncio.run(pipeline_phase(target, model, p, log_big, artifacts, model_cpus=(model_core,)))
            phase["model"] = model
            result["pipeline"] = phase
    finally:
        os.sched_setaffinity(0, saved)
    result["summary"] = summary(result)
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    result["server_logs"] = log_dir
    return result


def summary(r: dict[str, object]) -> dict[str, object]:
    ing = r["ingest"]
    s: dict[str, object] = {
        "ingest_vs_decode_limit": ing["ingest_vs_decode_limit"],  # type: ignore[index]
        "server_ingest_cpu_ms_per_frame": ing["server_ingest_cpu_ms_per_frame"],  # type: ignore[index]
        "pyav_cpu_ms_per_frame": ing["pyav_cpu_ms_per_frame"],  # type: ignore[index]
        "server_ingest_cpu_vs_pyav": ing["server_ingest_cpu_vs_pyav"],  # type: ignore[index]
    }
    v = s["ingest_vs_decode_limit"]
    targets: dict[str, object] = {"ingest_vs_decode_limit": target(v, ">=", 0.85)}
    pipe = r.get("pipeline")
    if isinstance(pipe, dict):
        p99, tgt = pipe["p99_frame_to_event_ms"], pipe["p99_target_ms"]
        s.update(
            p99_frame_to_event_ms=p99,
            p99_target_ms=tgt,
            service_time_ms=pipe["service_time_ms"],
            capacity_fps=pipe["capacity_fps"],
            p99_beyond_own_batch_ms=pipe["p99_beyond_own_batch_ms"],
        )
        targets |= latency_targets(pipe)
    s["targets"] = targets
    return s


def format_table(r: dict[str, object]) -> str:
    s = r["summary"]
    lines = [
        f"pinned mode (ingest core : model core = {r['pin']})",
        f"{'metric':<44} {'value':>10} {'target':>12}  met",
    ]
    for key, t in s["targets"].items():  # type: ignore[index,union-attr]
        lines.append(f"{key:<44} {t['value']!s:>10} {t['target']:>12}  {t['met']}")
    for key in ("server_ingest_cpu_ms_per_frame", "pyav_cpu_ms_per_frame", "server_ingest_cpu_vs_pyav"):
        lines.append(f"{key:<44} {s[key]!s:>10}")  # type: ignore[index]
    return "\n".join(lines)


def main(json_path: str | None, quick: bool) -> int:
    import json

    result = run_pinned(Params.quick_params() if quick else Params())
    print(format_table(result), flush=True)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {json_path}")
    return 0
