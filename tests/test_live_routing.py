"""Live routing through a real server: two local pools of the real tiny BLIP, 10 cameras, weights switched by the
authenticated Admin RPC mid-stream; and the admin identity (token role) checked by the AuthInterceptor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from factories import FakeEngine, cameras_with_sessions, free_port, scrape, serving, square_units

from inference.engine import load_engine
from inference.pools import PoolSpec
from inference.router import Router
from ingest import tokens
from ingest.certs import TestCA
from ingest.config import ServerConfig
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.admin import set_route
from simulators.camera import run_camera
from simulators.credentials import ClientSecurity


def check_every_frame_scored_once(reports, sessions) -> None:  # noqa: ANN001
    """No stream ended early, every sampled frame has exactly one FrameScores, nothing was dropped."""
    for r in reports:
        assert r.error is None, f"{r.device_id}: stream ended: {r.error}"
        seqs = [s.frame_seq for s in r.scores]
        assert len(seqs) == len(set(seqs)), f"{r.device_id}: a frame was scored twice"
        stats = sessions[r.device_id].stats
        assert stats.frames_sampled == stats.frames_scored == len(seqs) > 0, (r.device_id, stats)
        assert not any(stats.dropped.values()) and stats.model_errors == 0, (r.device_id, stats)


def pool_runs(report) -> list[str]:  # noqa: ANN001
    """The pools a camera's frames went to, collapsed into runs: ['a', 'b'] means a...a then b...b."""
    runs: list[str] = []
    for s in report.scores:
        if not runs or runs[-1] != s.pool:
            runs.append(s.pool)
    return runs


def test_weights_switched_by_admin_rpc_while_10_cameras_stream(tiny_engine) -> None:
    other = load_engine("tiny", dtype="fp32")
    router = Router({"a": (PoolSpec("a"), tiny_engine), "b": (PoolSpec("b"), other)}, {"a": 1})
    cfg = ServerConfig(port=0, max_streams_per_device=1, metrics_port=free_port())
    units = square_units(8.0)

    with serving(router, cfg) as (address, server):

        async def scenario():  # noqa: ANN202
            cameras = [
                run_camera(address, f"cam-{i}", units, speed=2.0, want_scores=True, sample_fps=3, wait=True)
                for i in range(10)
            ]
            run = asyncio.ensure_future(cameras_with_sessions(server, cameras))
            await asyncio.sleep(2.0)  # mid-stream (the clip lasts 4 s at 2x)
            status = await set_route(address, {"a": 0, "b": 1}, None)
            return await run, status

        (reports, sessions), status = asyncio.run(scenario())
        scraped = scrape_pools(scrape(server.metrics_port))

    assert dict(status.weights) == {"a": 0.0, "b": 1.0} and status.version == 2
    check_every_frame_scored_once(reports, sessions)
    # every camera saw its frames answered by a, then (from the switch on) by b, never back
    assert all(pool_runs(r) == ["a", "b"] for r in reports), [pool_runs(r) for r in reports]
    snap = router.snapshot()
    pools = snap["pools"]
    assert snap["switches"] == 1
    assert pools["a"]["frames"] + pools["b"]["frames"] == sum(len(r.scores) for r in reports)  # type: ignore[index]
    assert pools["a"]["frames"] > 0 and pools["b"]["frames"] > 0  # type: ignore[index]
    # the server's /metrics show the switch: frames by pool, the weights now, one route switch
    assert scraped["petstream_pool_frames_total"] == {"a": pools["a"]["frames"], "b": pools["b"]["frames"]}  # type: ignore[index]
    assert scraped["petstream_pool_weight"] == {"a": 0.0, "b": 1.0}
    assert scraped["petstream_route_switches_total"] == {"": 1.0}
    other.close()


def scrape_pools(text: str) -> dict[str, dict[str, float]]:
    """The pool and route families of a scrape: name -> pool -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(("petstream_pool_", "petstream_route_")):
            for sample in family.samples:
                out.setdefault(sample.name, {})[sample.labels.get("pool", "")] = sample.value
    return out


def test_a_bad_route_is_invalid_argument_and_changes_nothing() -> None:
    router = Router({"a": (PoolSpec("a"), FakeEngine()), "b": (PoolSpec("b"), FakeEngine())}, {"a": 1})
    with serving(router, ServerConfig(port=0)) as (address, _):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            asyncio.run(set_route(address, {"cuda": 1}, None))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown pool" in (err.value.details() or "")
        status = asyncio.run(set_route(address, None, None))
    assert dict(status.weights) == {"a": 1.0, "b": 0.0} and [p.name for p in status.pools] == ["a", "b"]


def test_admin_rpc_needs_an_admin_token_and_a_camera_token_cannot_call_it(tmp_path: Path) -> None:
    ca = TestCA()
    server = ca.server()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "server.pem").write_bytes(server.cert_pem)
    (tmp_path / "server.key").write_bytes(server.key_pem)
    key_path = str(tmp_path / "token.key")
    tokens.generate_key(key_path, "HS256")
    key = tokens.load_key(key_path)
    cfg = ServerConfig(
        port=0, tls_cert=str(tmp_path / "server.pem"), tls_key=str(tmp_path / "server.key"), token_key=key_path
    )
    router = Router({"a": (PoolSpec("a"), FakeEngine()), "b": (PoolSpec("b"), FakeEngine())}, {"a": 1})
    ca_pem = str(tmp_path / "ca.pem")
    camera = ClientSecurity(ca=ca_pem, token=tokens.issue(key, "cam-1", 600))
    admin = ClientSecurity(ca=ca_pem, token=tokens.issue(key, "ops", 600, role="admin"))
    with serving(router, cfg) as (address, srv):
        target = address.replace("127.0.0.1", "localhost")
        for security, code in ((ClientSecurity(ca=ca_pem), "UNAUTHENTICATED"), (camera, "PERMISSION_DENIED")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                asyncio.run(set_route(target, {"b": 1}, security))
            assert err.value.code().name == code, err.value.details()
        assert router.weights() == {"a": 1.0, "b": 0.0}
        status = asyncio.run(set_route(target, {"b": 1}, admin))
        assert dict(status.weights) == {"a": 0.0, "b": 1.0}
        # an admin token opens no camera stream
        report = asyncio.run(run_camera(target, "ops", square_units(1.0), speed=0, security=admin))
        assert report.error is not None and report.error.startswith("PERMISSION_DENIED")
        assert srv.auth.refusals["not_admin"] == 1


def test_admin_is_listed_by_reflection_only_on_a_pool_router() -> None:
    async def services(address: str) -> set[str]:
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        async with grpc.aio.insecure_channel(address) as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            req = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in stub.ServerReflectionInfo(iter([req])):
                return {s.name for s in reply.list_services_response.service}
        return set()

    router = Router({"a": (PoolSpec("a"), FakeEngine())})
    with serving(router, ServerConfig(port=0)) as (address, _):
        assert "petstream.v1.Admin" in asyncio.run(services(address))
    with serving(FakeEngine(), ServerConfig(port=0)) as (address, _):
        assert "petstream.v1.Admin" not in asyncio.run(services(address))
    assert pb.DESCRIPTOR.services_by_name["Admin"] and pb_grpc.AdminStub
