"""Unit tests of the streaming layer: sampler, batch planning, batcher policies, event lifecycle."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from factories import FakeEngine

from inference.types import DEFAULT_QUESTIONS, VQARequest
from streaming.batcher import Batcher, BatchPolicy, Dropped, WorkItem, plan_batch
from streaming.events import BehaviorTracker, EventRule
from streaming.sampler import FrameInfo, RateSampler, create


def test_rate_sampler_caps_to_fps_without_drift():
    s = RateSampler(fps=1.0)
    pts = [round(i * 1e6 / 15) for i in range(15 * 60)]  # one minute at 15 fps
    picked = [p for p in pts if s.should_sample(FrameInfo(p, False))]
    assert len(picked) == 60
    assert all(abs(b - a - 1_000_000) <= 66_667 for a, b in zip(picked, picked[1:], strict=False))


def test_rate_sampler_reanchors_after_clock_jump_back():
    s = RateSampler(fps=2.0)
    assert s.should_sample(FrameInfo(10_000_000, True))
    assert not s.should_sample(FrameInfo(10_100_000, False))
    assert s.should_sample(FrameInfo(1_000, False))  # camera clock restarted


def test_sampler_registry_names_allowed_values():
    with pytest.raises(ValueError, match="allowed"):
        create("nope")
    with pytest.raises(ValueError, match="sample_fps"):
        RateSampler(0)


def _items(device: str, n: int, t0: int = 0) -> list[WorkItem]:
    img = np.zeros((4, 4, 3), np.uint8)
    return [WorkItem(device, VQARequest((device, i), img, DEFAULT_QUESTIONS), t0 + i, lambda o: None) for i in range(n)]


def test_plan_batch_is_fair_round_robin():
    queues = {"a": _items("a", 10), "b": _items("b", 2), "c": _items("c", 1)}
    assert plan_batch(queues, 6) == ["a", "b", "c", "a", "b", "a"]
    assert plan_batch(queues, 6, start=1) == ["b", "c", "a", "b", "a", "a"]
    assert plan_batch({"a": _items("a", 3)}, 8) == ["a", "a", "a"]
    assert plan_batch({"a": []}, 8) == []


def test_batch_policy_validates_fields():
    with pytest.raises(ValueError, match="max_batch"):
        BatchPolicy(max_batch=0)


def _run_batcher(policy: BatchPolicy, engine: FakeEngine, submit_plan, settle_s: float = 0.3):
    outcomes: dict[object, object] = {}

    async def main():
        b = Batcher(engine.run, policy, ThreadPoolExecutor(1))
        task = asyncio.create_task(b.run())
        for device, n in submit_plan:
            for item in _items(device, n, time.monotonic_ns()):
                b.submit(
                    WorkItem(
                        item.stream,
                        item.request,
                        item.enqueued_ns,
                        lambda o, k=item.request.key: outcomes.__setitem__(k, o),
                    )
                )
        await asyncio.sleep(settle_s)
        b.close()
        task.cancel()
        return b

    b = asyncio.run(main())
    return b, outcomes


def test_batcher_drops_oldest_when_a_camera_floods_and_counts_it():
    engine = FakeEngine()
    policy = BatchPolicy(max_batch=4, max_wait_ms=20, per_device_queue=3)
    b, outcomes = _run_batcher(policy, engine, [("flood", 10), ("quiet", 1)])
    dropped = [k for k, o in outcomes.items() if isinstance(o, Dropped)]
    assert sorted(dropped) == [("flood", i) for i in range(7)]
    assert all(o.reason == "backpressure" for k, o in outcomes.items() if k in dropped)
    ran = [k for batch in engine.batches for k in batch]
    assert ("quiet", 0) in ran and len(ran) == 4  # 3 newest of the flood + the quiet camera


def test_batcher_reports_engine_failure_to_every_item():
    engine = FakeEngine(fail=True)
    b, outcomes = _run_batcher(BatchPolicy(max_batch=2, max_wait_ms=5), engine, [("a", 2)])
    assert len(outcomes) == 2 and all(isinstance(o, RuntimeError) for o in outcomes.values())


def _feed(tracker: BehaviorTracker, scores: list[float]) -> list[str]:
    out = []
    for i, p in enumerate(scores):
        e = tracker.update(p, i * 1_000_000, i)
        if e:
            out.append(e.state)
    return out


def test_flickering_score_gives_one_started_and_one_ended():
    rule = EventRule(high=0.6, low=0.4, start_k=2, start_n=3, end_m=3)
    t = BehaviorTracker("cam", "barking", rule)
    flicker = [0.1, 0.9, 0.2, 0.9, 0.3, 0.9, 0.95, 0.2, 0.9, 0.1, 0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1]
    assert _feed(t, flicker) == ["STARTED", "ENDED"]


def test_event_carries_ids_times_and_confidence():
    t = BehaviorTracker("cam", "playing", EventRule(start_k=1, start_n=1, end_m=1))
    start = t.update(0.9, 5_000_000, 5)
    assert start and start.state == "STARTED" and start.event_id.startswith("playing-")
    assert t.update(0.7, 6_000_000, 6) is None
    end = t.update(0.1, 7_000_000, 7)
    assert end and end.event_id == start.event_id and end.start_pts_us == 5_000_000
    assert end.end_pts_us == 7_000_000 and end.confidence == pytest.approx(0.8)


def test_cooldown_and_min_duration():
    rule = EventRule(start_k=1, start_n=1, end_m=1, min_duration_s=3, cooldown_s=5)
    t = BehaviorTracker("cam", "barking", rule)
    states = _feed(t, [0.9, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9])
    # started at 0 s, may end only from 3 s; re-start blocked until 8 s
    assert states == ["STARTED", "ENDED", "STARTED"]


def test_event_rule_validation_names_fields():
    with pytest.raises(ValueError, match="low <= high"):
        EventRule(high=0.3, low=0.5)
    with pytest.raises(ValueError, match="start_k"):
        EventRule(start_k=4, start_n=3)


def test_server_config_per_behavior_rules_from_file_env_and_flags(tmp_path):
    import json

    from ingest.config import ServerConfig

    path = tmp_path / "cfg.json"
    path.write_text(
        json.dumps(
            {"port": 1234, "behavior_events": {"barking": {"start_k": 1, "start_n": 1}}, "batch": {"max_batch": 4}}
        )
    )
    cfg = ServerConfig.load(
        str(path), env={"PETSTREAM_PORT": "2345", "PETSTREAM_DEFAULT_SAMPLE_FPS": "2"}, model="tiny"
    )
    assert cfg.port == 2345 and cfg.default_sample_fps == 2.0 and cfg.model == "tiny" and cfg.batch.max_batch == 4
    assert cfg.rule_for("barking").start_k == 1 and cfg.rule_for("playing") == EventRule()
    with pytest.raises(ValueError, match="unknown config field"):
        ServerConfig.load(None, env={}, colour="blue")
    with pytest.raises(ValueError, match="default_sampling"):
        ServerConfig.load(None, env={"PETSTREAM_DEFAULT_SAMPLING": "sometimes"})
    with pytest.raises(ValueError, match="PETSTREAM_PORT"):
        ServerConfig.load(None, env={"PETSTREAM_PORT": "eighty"})


def test_batcher_refresh_replaces_the_newest_waiting_frame_and_answers_it_once():
    engine = FakeEngine()
    outcomes: list[tuple[str, object]] = []

    async def main() -> tuple[bool, bool, int]:
        b = Batcher(engine.run, BatchPolicy(max_batch=4, max_wait_ms=30), ThreadPoolExecutor(1))
        empty = b.refresh(_items("cam", 1, time.monotonic_ns())[0])  # nothing waiting: nothing to refresh
        old, older = _items("cam", 2, time.monotonic_ns())
        b.submit(WorkItem("cam", old.request, old.enqueued_ns, lambda o: outcomes.append(("first", o))))
        b.submit(WorkItem("cam", older.request, older.enqueued_ns, lambda o: outcomes.append(("second", o))))
        image = np.full((32, 32, 3), 7, np.uint8)
        fresh = WorkItem(
            "cam",
            VQARequest("fresh", image, DEFAULT_QUESTIONS),
            time.monotonic_ns() + 10**9,
            lambda o: outcomes.append(("fresh", o)),
        )
        refreshed = b.refresh(fresh)
        queue_time_kept = b._queues["cam"][-1].enqueued_ns == older.enqueued_ns
        task = asyncio.create_task(b.run())
        await asyncio.sleep(0.2)
        b.close()
        task.cancel()
        return empty, refreshed and queue_time_kept, b.frames_run

    empty, refreshed, frames_run = asyncio.run(main())
    assert not empty and refreshed
    assert frames_run == 2
    assert [name for name, _ in outcomes] == ["first", "fresh"]  # the replaced frame is never answered
    assert [k for batch in engine.batches for k in batch] == [("cam", 0), "fresh"]
