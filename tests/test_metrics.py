"""Prometheus metrics: real video through a real server with metrics on, the scrape checked against the client."""

from __future__ import annotations

import asyncio
import io
import urllib.request
from collections import Counter

import grpc
import pytest
from factories import FakeEngine, free_port, scrape, serving
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from bench.load import encode_clip, percentile
from ingest.config import ServerConfig
from ingest.metrics import LATENCY_BUCKETS, ServerMetrics, stats_counts
from ingest.operator import histogram_quantile
from ingest.session import SessionStats
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import run_camera


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def _buckets(samples: dict, name: str) -> list[tuple[float, float]]:
    return sorted((float(lab["le"]), v) for lab, v in samples[name + "_bucket"])


def _bucket_width(value_s: float) -> float:
    bounds = (0.0, *LATENCY_BUCKETS)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if value_s <= hi:
            return hi - lo
    return float("inf")


@pytest.fixture(scope="module")
def sim_engine():
    from inference.engine import load_engine

    engine = load_engine("sim-tiny", dtype="fp32")
    yield engine
    engine.close()


def test_scrape_matches_what_the_cameras_saw(sim_engine):
    """Two scripted cameras (real H.264, sim-tiny: real events) at 4x real time; then Ask, good and bad."""
    clips = {f"m-{s}": encode_clip(s, width=320, height=180, seconds=24, still_fraction=0.3) for s in (3, 4)}
    config = ServerConfig(port=0, metrics_port=free_port())

    async def scenario(address: str) -> tuple[list, list[str]]:
        reports = await asyncio.gather(
            *(run_camera(address, d, u, speed=4.0, want_scores=True, sample_fps=2.0) for d, u in clips.items())
        )
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="JPEG")
        codes = []
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.BehaviorStreamStub(channel)
            for image in (buf.getvalue(), b""):
                try:
                    await stub.Ask(pb.AskRequest(image=image))
                    codes.append("OK")
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code().name)
        return list(reports), codes

    with serving(sim_engine, config) as (address, server):
        reports, codes = asyncio.run(scenario(address))
        samples = _samples(scrape(server.metrics_port))
    assert codes == ["OK", "INVALID_ARGUMENT"]
    assert all(r.error is None for r in reports)
    sent = sum(r.units_sent for r in reports)
    scored = sum(len(r.scores) for r in reports)
    events = Counter((e.behavior, pb.EventState.Name(e.state)) for r in reports for e in r.events)
    assert scored > 20 and sum(events.values()) >= 2, (scored, events)  # the scripts show behaviors: events came
    # counts: exactly what the cameras saw
    assert _total(samples, "petstream_frames_received_total") == sent
    assert _total(samples, "petstream_frames_decoded_total") == sent  # rate policy decodes every frame
    assert _total(samples, "petstream_frames_scored_total") == scored
    assert _total(samples, "petstream_frame_to_event_seconds_count") == scored
    assert _total(samples, "petstream_stage_latency_seconds_count", stage="vision") == scored
    dropped = _total(samples, "petstream_frames_dropped_total")
    assert _total(samples, "petstream_frames_sampled_total") == scored + dropped
    for (behavior, state), n in events.items():
        assert _total(samples, "petstream_events_total", behavior=behavior, state=state) == n
    assert _total(samples, "petstream_events_total") == sum(events.values())
    assert _total(samples, "petstream_streams_opened_total") == 2 and _total(samples, "petstream_active_streams") == 0
    stream = {"grpc_service": "petstream.v1.BehaviorStream", "grpc_method": "Stream"}
    assert _total(samples, "petstream_grpc_server_handled_total", grpc_code="OK", **stream) == 2
    ask = {"grpc_service": "petstream.v1.BehaviorStream", "grpc_method": "Ask"}
    assert _total(samples, "petstream_grpc_server_handled_total", grpc_code="OK", **ask) == 1
    assert _total(samples, "petstream_grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **ask) == 1
    assert _total(samples, "petstream_model_frames_total") == scored + 1  # the Ask went through the model too
    assert _total(samples, "petstream_model_batch_size_sum") == scored + 1
    # end-to-end latency: the server's histogram quantiles against the client's own measurement (frame due to be
    # sent -> its scores received). Tolerance: a quantile read off a histogram is only known to its bucket, so
    # within the width of the bucket holding the client's value, plus 15 ms for loopback and the client's loop.
    client_s = [at - r.sent_at(s.pts_us) for r in reports for s, at in zip(r.scores, r.score_arrivals, strict=True)]
    buckets = _buckets(samples, "petstream_frame_to_event_seconds")
    for q in (0.5, 0.9, 0.99):
        client_q = percentile(client_s, q * 100)
        server_q = histogram_quantile(q, buckets)
        assert client_q is not None and server_q is not None
        tolerance = _bucket_width(client_q) + 0.015
        assert abs(server_q - client_q) <= tolerance, (q, server_q, client_q, tolerance)


def test_stats_collector_counts_departed_cameras_once_and_labels_stay_bounded():
    metrics = ServerMetrics(behaviors={"barking"})
    assert metrics.behavior_label("barking") == "barking" and metrics.behavior_label("x" * 50) == "other"
    stats = SessionStats(frames_decoded=10, frames_sampled=4, frames_scored=3, skipped_resync=2)
    stats.dropped = Counter({"backpressure": 1})
    c = stats_counts(stats)
    assert c["received", ""] == 12 and c["dropped", "backpressure"] == 1 and c["dropped", "resync"] == 2


def test_per_device_labels_are_opt_in(tiny_engine):
    units = encode_clip(1, width=160, height=96, seconds=2)
    for per_device in (False, True):
        config = ServerConfig(port=0, metrics_port=free_port(), metrics_per_device=per_device)
        with serving(tiny_engine, config) as (address, server):
            asyncio.run(run_camera(address, "dev-a", units, speed=0, sample_fps=2.0))
            samples = _samples(scrape(server.metrics_port))
        labels = [lab for lab, _ in samples["petstream_frames_scored_total"]]
        assert labels == ([{"device": "dev-a"}] if per_device else [{}])
        assert _total(samples, "petstream_frames_scored_total") == 4


def test_metrics_port_zero_serves_nothing_and_a_taken_port_is_a_clear_error():
    from ingest.server import PetstreamServer

    with serving(FakeEngine(), ServerConfig(port=0)) as (_, server):
        assert server.metrics_port == 0 and server.service.metrics is None  # off by default
    port = free_port()
    with serving(FakeEngine(), ServerConfig(port=0, metrics_port=port)) as (_, server):
        assert server.metrics_port == port and "petstream_frames_scored_total 0.0" in scrape(port)
        second = PetstreamServer(FakeEngine(), ServerConfig(port=0, metrics_port=port))
        with pytest.raises(RuntimeError, match=f"metrics_port: cannot bind 127.0.0.1:{port}"):
            asyncio.run(second.start())
    with pytest.raises(ValueError, match="metrics_port"):
        ServerConfig(metrics_port=70000)


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.1, 0.0), (0.2, 50.0), (0.4, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 0.0), (float("inf"), 5.0)]) == 1.0  # in +Inf: the last finite bound


def test_operator_json_and_thumbnail_of_the_frame_the_model_looked_at(tiny_engine):
    units = encode_clip(2, width=160, height=96, seconds=3)
    with serving(tiny_engine, ServerConfig(port=0, metrics_port=free_port())) as (address, server):

        async def one_camera_then_look() -> dict:
            import json

            task = asyncio.create_task(run_camera(address, "cam/1 ü", units, speed=1.0, sample_fps=2.0))
            state: dict = {}
            for _ in range(40):
                await asyncio.sleep(0.1)
                state = json.loads(await asyncio.to_thread(scrape, server.metrics_port, "/api/state"))
                if state["cameras"] and state["cameras"][0]["thumbnail"]:
                    break
            state["jpeg"] = await asyncio.to_thread(
                urllib.request.urlopen, f"http://127.0.0.1:{server.metrics_port}{state['cameras'][0]['thumbnail']}"
            )
            state["jpeg"] = state["jpeg"].read()
            await task
            return state

        state = asyncio.run(one_camera_then_look())
    cam = state["cameras"][0]
    assert cam["device_id"] == "cam/1 ü" and cam["codec"] == "h264" and cam["frames"]["scored"] >= 1
    assert Image.open(io.BytesIO(state["jpeg"])).size == (256, 144)


def test_auth_refusals_by_reason_are_exported_from_the_interceptors_counter():
    from prometheus_client import generate_latest

    metrics = ServerMetrics()
    refusals: Counter[str] = Counter()
    metrics.attach_refusals(refusals)  # PetstreamServer attaches AuthInterceptor.refusals
    refusals["bad_token"] += 2
    metrics.auth_refused("expired")
    samples = _samples(generate_latest(metrics.registry).decode())
    assert _total(samples, "petstream_auth_refusals_total", reason="bad_token") == 2
    assert _total(samples, "petstream_auth_refusals_total", reason="expired") == 1
