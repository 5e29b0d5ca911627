"""`petstream loadtest`: one small real sweep against a real server (tiny BLIP, real H.264), outputs and the knee."""

from __future__ import annotations

import csv
import json

from factories import free_port, serving

from bench.loadtest import LoadParams, ask_jpeg, clips_for, knee, knee_search, sweep, write_outputs
from ingest.config import ServerConfig
from petstream.progress import bar


def _row(cameras: int, sustained: bool, asks: int = 0, skipped: bool = False) -> dict:
    return {"cameras": cameras, "asks": asks, "sustained": sustained, "skipped": skipped}


def test_knee_is_the_most_cameras_with_every_lighter_load_sustained():
    assert knee([_row(1, True), _row(2, True), _row(4, False), _row(8, True)]) == 2  # 8 passing alone is noise
    assert knee([_row(1, False), _row(2, True)]) == 0
    assert knee([_row(1, True), _row(2, True, asks=2), _row(4, False, skipped=True)]) == 1  # Ask cells apart
    assert knee([]) == 0


def test_knee_search_doubles_then_bisects():
    tried: list[int] = []

    def capacity(n: int) -> bool:
        tried.append(n)
        return n <= 11

    assert knee_search(capacity, 1, 128, resolution=0.0) == 11
    assert tried[:5] == [1, 2, 4, 8, 16] and set(tried[5:]) <= set(range(9, 16))
    assert knee_search(lambda n: False, 4, 128, 0.25) == 0
    assert knee_search(lambda n: True, 4, 20, 0.25) == 16  # never failed: the largest count tried


def test_a_small_sweep_measures_cells_and_writes_csv_json_png(tiny_engine, tmp_path):
    p = LoadParams(
        model="tiny",
        cameras=(1, 2),
        asks=(0, 1),
        warmup_s=1.0,
        window_s=3.0,
        drain_s=15.0,
        width=160,
        height=96,
        clip_seeds=2,
        sample_fps=2.0,
        p99_budget_ms=30_000,
    )
    clips = clips_for(p, p.warmup_s + p.window_s + 1.5)
    port = free_port()
    with serving(tiny_engine, ServerConfig(port=0, metrics_port=port)) as (address, _):
        rows = sweep(address, p, clips, ask_jpeg(160, 96), f"http://127.0.0.1:{port}/metrics", bar(total=4))
    assert [(r["cameras"], r["asks"]) for r in rows] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    for r in rows:
        assert r["errors"] == 0 and r["n"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0, r
        assert r["scored_fps"] > 0 and r["dropped"] == 0
    assert all(r["ask_calls"] > 0 and r["ask_p99_ms"] > 0 for r in rows if r["asks"])
    for r in rows:
        r.update(setting="threads=default max_batch=default", threads=None, max_batch=None)
    result = {
        "cells": rows,
        "p99_budget_ms": p.p99_budget_ms,
        "params": json.loads(json.dumps(p.__dict__)),
        "knee": {"cameras": knee(rows), "setting": rows[0]["setting"]},
    }
    write_outputs(result, tmp_path)
    table = list(csv.DictReader(open(tmp_path / "loadtest.csv")))
    assert len(table) == 4 and {"p50_ms", "p95_ms", "p99_ms", "scored_fps", "sustained"} <= set(table[0])
    assert json.loads((tmp_path / "loadtest.json").read_text())["knee"]["cameras"] == 2
    assert (tmp_path / "loadtest.png").read_bytes()[:4] == b"\x89PNG"


def test_the_naive_baseline_server_speaks_the_same_proto(tmp_path):
    """bench.naive_server (generate() per question, every frame decoded) answers a camera and Ask like petstream."""
    import asyncio
    import io

    import grpc
    from factories import square_units
    from PIL import Image

    from protos.petstream.v1 import petstream_pb2 as pb
    from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
    from simulators.camera import run_camera
    from simulators.fleet import server_process

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, format="JPEG")

    async def scenario(address: str) -> tuple:
        report = await run_camera(address, "cam-n", square_units(3.0), speed=0, want_scores=True, sample_fps=2.0)
        async with grpc.aio.insecure_channel(address) as channel:
            answer = await pb_grpc.BehaviorStreamStub(channel).Ask(pb.AskRequest(image=buf.getvalue()))
        return report, answer

    args = ["--model", "tiny"]
    with server_process(args, log_path=str(tmp_path / "naive.log"), module="bench.naive_server") as address:
        report, answer = asyncio.run(scenario(address))
    assert report.error is None and report.accepted.model == "tiny"
    assert len(report.scores) == 6  # 3 s of video, a frame every 0.5 s of pts, each answered
    assert all(set(s.p_yes) == {"barking", "playing", "chewing_furniture"} for s in report.scores)
    assert all(v in (0.0, 1.0) for s in report.scores for v in s.p_yes.values())  # the answer text, yes or not
    assert set(answer.p_yes) == {"barking", "playing", "chewing_furniture"}
