"""WatchEvents and ListEvents through a real server: every event the cameras got, exactly once by cursor across a
subscriber's reconnects, history by device and time, and the access hook that limits what a caller may read."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from factories import FakeEngine, blink_units, running_server, serving

from ingest.config import ServerConfig
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import run_camera
from simulators.subscriber import list_events, watch_events
from streaming.events import EventRule

RULE = EventRule(start_k=2, start_n=3, end_m=2)
BARKING = [("barking", "")]


def key(e: pb.BehaviorEvent) -> str:
    return f"{e.event_id}/{pb.EventState.Name(e.state)}"


async def _camera(address: str, device: str, seconds: float = 6.0):  # noqa: ANN202
    return await run_camera(address, device, blink_units(seconds), speed=4, sample_fps=4, behaviors=BARKING)


def test_a_subscriber_gets_every_event_once_in_order_and_a_reconnect_gets_exactly_what_it_missed():
    with running_server(FakeEngine(), events=RULE) as address:

        async def scenario():  # noqa: ANN202
            stop = asyncio.Event()
            whole = asyncio.create_task(watch_events(address, stop=stop))
            cams = await asyncio.gather(_camera(address, "cam-a"), _camera(address, "cam-b"))
            # a second subscriber that read the first 3 events, went away, and came back with its cursor
            first = []
            async with grpc.aio.insecure_channel(address) as channel:
                call = pb_grpc.EventsStub(channel).WatchEvents(pb.WatchEventsRequest())
                async for record in call:
                    first.append(record)
                    if len(first) == 3:
                        call.cancel()
                        break
            rest_stop = asyncio.Event()
            rest = asyncio.create_task(watch_events(address, after_cursor=first[-1].cursor, stop=rest_stop))
            await asyncio.sleep(0.5)
            stop.set()
            rest_stop.set()
            return cams, await whole, first, await rest

        cams, whole, first, rest = asyncio.run(scenario())
    camera_keys = {key(e) for c in cams for e in c.events}
    assert all(c.error is None and len(c.events) >= 4 for c in cams), [(c.error, len(c.events)) for c in cams]
    assert whole.keys() == list(dict.fromkeys(whole.keys())), "no event delivered twice"
    assert set(whole.keys()) == camera_keys, "the subscriber got exactly the events the cameras got"
    cursors = [r.cursor for r in whole.records]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    resumed = [r.cursor for r in first] + [r.cursor for r in rest.records]
    assert resumed == cursors, "reconnecting after its cursor: nothing missed, nothing twice"
    for c in cams:  # per camera, the log keeps the order the camera saw
        mine = [key(r.event) for r in whole.records if r.event.device_id == c.device_id]
        assert mine == [key(e) for e in c.events]
    assert {r.session_id for r in whole.records} != {""}, "records name the camera stream they came from"


def test_list_events_pages_by_device_and_time_and_refuses_bad_ranges():
    with running_server(FakeEngine(), events=RULE) as address:

        async def scenario():  # noqa: ANN202
            await asyncio.gather(_camera(address, "cam-a"), _camera(address, "cam-b"))
            everything = await list_events(address, page_size=3)
            only_a = await list_events(address, device_ids=["cam-a"])
            since = everything[4].time_unix_us
            later = await list_events(address, since_unix_us=since)
            until = await list_events(address, until_unix_us=since)
            errors = []
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.EventsStub(channel)
                for bad in (
                    pb.ListEventsRequest(page_size=5000),
                    pb.ListEventsRequest(since_unix_us=10, until_unix_us=5),
                    pb.ListEventsRequest(device_ids=[""]),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await stub.ListEvents(bad)
                    errors.append((err.value.code(), err.value.details()))
            return everything, only_a, later, until, errors

        everything, only_a, later, until, errors = asyncio.run(scenario())
    cursors = [r.cursor for r in everything]
    assert len(everything) >= 8 and cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert [r.cursor for r in only_a] == [r.cursor for r in everything if r.event.device_id == "cam-a"]
    assert [r.cursor for r in later] == [r.cursor for r in everything if r.time_unix_us >= everything[4].time_unix_us]
    assert [r.cursor for r in until] == [r.cursor for r in everything if r.time_unix_us < everything[4].time_unix_us]
    assert [code for code, _ in errors] == [grpc.StatusCode.INVALID_ARGUMENT] * 3
    assert "page_size" in errors[0][1] and "until_unix_us" in errors[1][1] and "device_ids" in errors[2][1]


def test_the_access_hook_limits_watch_and_list_to_the_devices_a_caller_may_read():
    def only_cam_a(context: grpc.aio.ServicerContext) -> frozenset[str]:
        return frozenset({"cam-a"})

    with serving(FakeEngine(), ServerConfig(port=0, events=RULE), access=only_cam_a) as (address, _):

        async def scenario():  # noqa: ANN202
            await asyncio.gather(_camera(address, "cam-a"), _camera(address, "cam-b"))
            mine = await list_events(address)
            stop = asyncio.Event()
            watched = asyncio.create_task(watch_events(address, stop=stop))
            await asyncio.sleep(0.5)
            stop.set()
            refused = []
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.EventsStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.ListEvents(pb.ListEventsRequest(device_ids=["cam-b"]))
                refused.append(err.value)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in stub.WatchEvents(pb.WatchEventsRequest(device_ids=["cam-a", "cam-b"])):
                        pass
                refused.append(err.value)
            return mine, await watched, refused

        mine, watched, refused = asyncio.run(scenario())
    assert mine and {r.event.device_id for r in mine} == {"cam-a"}
    assert watched.records and {r.event.device_id for r in watched.records} == {"cam-a"}
    for err in refused:
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "cam-b" in err.details()


def test_from_latest_skips_history():
    with running_server(FakeEngine(), events=RULE) as address:

        async def scenario():  # noqa: ANN202
            await _camera(address, "cam-a", seconds=4)
            old = await list_events(address)
            got = []
            async with grpc.aio.insecure_channel(address) as channel:
                call = pb_grpc.EventsStub(channel).WatchEvents(pb.WatchEventsRequest(from_latest=True))
                reader = asyncio.create_task(_collect(call, got))
                await _camera(address, "cam-b", seconds=4)
                await asyncio.sleep(0.5)
                call.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            return old, got

        old, got = asyncio.run(scenario())
    assert old and got
    assert {r.event.device_id for r in got} == {"cam-b"} and got[0].cursor > old[-1].cursor


async def _collect(call, out: list) -> None:  # noqa: ANN001
    async for record in call:
        out.append(record)


def test_with_tokens_a_camera_reads_only_its_own_events_and_a_backend_credential_reads_all(tmp_path):
    from test_security import Pki, red_units

    from ingest import tokens
    from ingest.access import BACKEND_DEVICE
    from simulators.credentials import ClientSecurity, open_channel

    pki = Pki(tmp_path)
    key_path = str(tmp_path / "token.key")
    tokens.generate_key(key_path, "HS256")
    key = tokens.load_key(key_path)
    creds = {
        d: ClientSecurity(ca=pki.ca_pem, token=tokens.issue(key, d, 600)) for d in ("cam-a", "cam-b", BACKEND_DEVICE)
    }
    config = ServerConfig(port=0, tls_cert=pki.server_cert, tls_key=pki.server_key, token_key=key_path, events=RULE)
    with serving(FakeEngine(), config) as (address, _):

        async def scenario():  # noqa: ANN202
            for device in ("cam-a", "cam-b"):
                report = await run_camera(address, device, red_units(), speed=0, security=creds[device])
                assert report.error is None and report.events, report.error
            seen: dict[str, object] = {}
            for who, security in (("cam-a", creds["cam-a"]), ("backend", creds[BACKEND_DEVICE])):
                async with open_channel(address, security) as channel:
                    stub = pb_grpc.EventsStub(channel)
                    seen[who] = {r.event.device_id for r in (await stub.ListEvents(pb.ListEventsRequest())).events}
                    call = stub.WatchEvents(pb.WatchEventsRequest())
                    first = await call.read()
                    call.cancel()
                    seen[f"{who}-watch"] = first.event.device_id
            errors = {}
            for who, security, request in (
                ("foreign", creds["cam-a"], pb.ListEventsRequest(device_ids=["cam-b"])),
                ("anonymous", ClientSecurity(ca=pki.ca_pem), pb.ListEventsRequest()),
            ):
                async with open_channel(address, security) as channel:
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await pb_grpc.EventsStub(channel).ListEvents(request)
                    errors[who] = err.value.code()
            async with open_channel(address, creds["cam-a"]) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in pb_grpc.EventsStub(channel).WatchEvents(pb.WatchEventsRequest(device_ids=["cam-b"])):
                        pass
                errors["foreign-watch"] = err.value.code()
            return seen, errors

        seen, errors = asyncio.run(scenario())
    assert seen["cam-a"] == {"cam-a"} and seen["cam-a-watch"] == "cam-a", "a camera reads its own events only"
    assert seen["backend"] == {"cam-a", "cam-b"}, "a backend credential reads every device"
    assert errors == {
        "foreign": grpc.StatusCode.PERMISSION_DENIED,
        "anonymous": grpc.StatusCode.UNAUTHENTICATED,
        "foreign-watch": grpc.StatusCode.PERMISSION_DENIED,
    }
