"""Transport security and identity through a real server: TLS + tokens, mutual TLS, plaintext only on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from factories import FakeEngine, encode_annexb, serving
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from ingest import tokens
from ingest.certs import TestCA
from ingest.config import ServerConfig
from protos.petstream.v1 import petstream_pb2 as pb
from protos.petstream.v1 import petstream_pb2_grpc as pb_grpc
from simulators.camera import CameraReport, run_camera
from simulators.credentials import ClientSecurity, open_channel
from simulators.video import EncodedUnit


def red_units(seconds: float = 4.0, fps: int = 15) -> list[EncodedUnit]:
    """Mostly red video: the fake engine's p_yes is the red level, so every behavior STARTs and then ENDs."""
    frames = []
    for i in range(round(seconds * fps)):
        img = np.full((48, 64, 3), (230, 20, 20), np.uint8)
        img[10:20, i % 40 : i % 40 + 10] = 255
        frames.append(img)
    return [EncodedUnit(d, p, k) for d, p, k in encode_annexb(frames, fps=fps, gop=15)]


class Pki:
    """A test CA on disk: the server's certificate and key, and one certificate per device on demand."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = TestCA()
        self.ca_pem = self._write("ca.pem", self.ca.cert_pem)
        server = self.ca.server()
        self.server_cert = self._write("server.pem", server.cert_pem)
        self.server_key = self._write("server.key", server.key_pem)

    def _write(self, name: str, data: bytes) -> str:
        (self.folder / name).write_bytes(data)
        return str(self.folder / name)

    def device(self, device_id: str, *, in_san: bool = False) -> ClientSecurity:
        issued = self.ca.device(device_id, in_san=in_san)
        tag = f"{device_id}-san" if in_san else device_id
        return ClientSecurity(
            ca=self.ca_pem,
            cert=self._write(f"{tag}.pem", issued.cert_pem),
            key=self._write(f"{tag}.key", issued.key_pem),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def hmac_key(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("keys") / "token.key")
    tokens.generate_key(path, "HS256")
    return path


def _stream(address: str, device_id: str, security: ClientSecurity | None, **kw) -> CameraReport:
    return asyncio.run(run_camera(address, device_id, red_units(), speed=0, want_scores=True, security=security, **kw))


def _open_only(address: str, device_id: str, security: ClientSecurity | None) -> str | None:
    """Open a stream and half-close without video; the error status, if any, as 'CODE: details'."""

    async def go() -> str | None:
        async with open_channel(address, security) as ch:
            call = pb_grpc.BehaviorStreamStub(ch).Stream(
                iter([pb.CameraMessage(open=pb.StreamOpen(device_id=device_id, codec=pb.CODEC_H264))])
            )
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as exc:
                return f"{exc.code().name}: {exc.details()}"
            return None

    return asyncio.run(go())


def _assert_streamed_own_events(report: CameraReport, device_id: str) -> None:
    assert report.error is None, report.error
    assert report.scores, "no scores came back"
    states = [(e.behavior, e.state) for e in report.events]
    assert ("barking", pb.STARTED) in states and ("barking", pb.ENDED) in states
    assert {e.device_id for e in report.events} == {device_id}


def test_mtls_round_trip_and_a_certificate_opens_only_its_own_device(pki: Pki) -> None:
    cfg = ServerConfig(port=0, tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca_pem)
    with serving(FakeEngine(), cfg) as (address, server):
        _assert_streamed_own_events(_stream(address, "cam-a", pki.device("cam-a")), "cam-a")
        # the device id may also be a SAN (urn:petstream:device:ID) with any CN
        _assert_streamed_own_events(_stream(address, "cam-s", pki.device("cam-s", in_san=True)), "cam-s")
        # A's certificate cannot open B
        other = _open_only(address, "cam-b", pki.device("cam-a"))
        assert other.startswith("PERMISSION_DENIED") and "'cam-a'" in other and "'cam-b'" in other
        # no certificate: the TLS handshake fails; no stream is ever opened
        bare = _stream(address, "cam-a", ClientSecurity(ca=pki.ca_pem))
        assert bare.error is not None and bare.error.startswith("UNAVAILABLE") and bare.accepted is None
        # a certificate from another CA fails the same way
        (pki.folder / "other").mkdir(exist_ok=True)
        stranger = Pki(pki.folder / "other").device("cam-a")
        foreign = _stream(address, "cam-a", ClientSecurity(ca=pki.ca_pem, cert=stranger.cert, key=stranger.key))
        assert foreign.error is not None and foreign.error.startswith("UNAVAILABLE")
        assert server.auth.refusals == {"wrong_device": 1}


def test_token_mode_refuses_missing_expired_and_foreign_tokens(pki: Pki, hmac_key: str, tmp_path: Path) -> None:
    key = tokens.load_key(hmac_key)
    other_key = tmp_path / "other.key"
    tokens.generate_key(str(other_key), "HS256")
    tls = {"ca": pki.ca_pem}
    cfg = ServerConfig(port=0, tls_cert=pki.server_cert, tls_key=pki.server_key, token_key=hmac_key)
    with serving(FakeEngine(), cfg) as (address, server):
        good = tokens.issue(key, "cam-a", 3600)
        _assert_streamed_own_events(_stream(address, "cam-a", ClientSecurity(**tls, token=good)), "cam-a")
        cases = {
            "no_credentials": ClientSecurity(**tls),
            "expired_token": ClientSecurity(**tls, token=tokens.issue(key, "cam-a", 60, now=time.time() - 3600)),
            "bad_token": ClientSecurity(**tls, token=tokens.issue(tokens.load_key(str(other_key)), "cam-a", 3600)),
        }
        for reason, security in cases.items():
            error = _open_only(address, "cam-a", security)
            assert error is not None and error.startswith("UNAUTHENTICATED"), (reason, error)
        assert "no credentials" in _open_only(address, "cam-a", cases["no_credentials"])
        assert "expired" in _open_only(address, "cam-a", cases["expired_token"])
        denied = _open_only(address, "cam-b", ClientSecurity(**tls, token=good))
        assert denied.startswith("PERMISSION_DENIED") and "'cam-b'" in denied
        assert server.auth.refusals == {"no_credentials": 2, "expired_token": 2, "bad_token": 1, "wrong_device": 1}


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


async def _ask_and_health(address: str, security: ClientSecurity) -> tuple[object, int]:
    async with open_channel(address, security) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
        try:
            answer: object = await pb_grpc.BehaviorStreamStub(ch).Ask(pb.AskRequest(image=_jpeg()))
        except grpc.aio.AioRpcError as exc:
            answer = exc.code()
        return answer, health.status


def test_ask_needs_a_token_and_health_does_not(pki: Pki, hmac_key: str) -> None:
    cfg = ServerConfig(port=0, tls_cert=pki.server_cert, tls_key=pki.server_key, token_key=hmac_key)
    token = tokens.issue(tokens.load_key(hmac_key), "cam-a", 600)
    with serving(FakeEngine(), cfg) as (address, _):
        refused, status = asyncio.run(_ask_and_health(address, ClientSecurity(ca=pki.ca_pem)))
        assert refused == grpc.StatusCode.UNAUTHENTICATED
        assert status == health_pb2.HealthCheckResponse.SERVING  # probes need no credentials
        answer, _ = asyncio.run(_ask_and_health(address, ClientSecurity(ca=pki.ca_pem, token=token)))
        assert isinstance(answer, pb.AskResponse) and set(answer.p_yes) == {"barking", "playing", "chewing_furniture"}


def test_plaintext_client_to_a_tls_port_fails_cleanly(pki: Pki, hmac_key: str) -> None:
    cfg = ServerConfig(port=0, tls_cert=pki.server_cert, tls_key=pki.server_key, token_key=hmac_key)
    token = tokens.issue(tokens.load_key(hmac_key), "cam-a", 600)
    with serving(FakeEngine(), cfg) as (address, _):
        started = time.monotonic()
        plain = asyncio.run(run_camera(address, "cam-a", red_units(1), speed=0, security=None))
        assert plain.error is not None and plain.error.startswith("UNAVAILABLE") and plain.accepted is None
        assert time.monotonic() - started < 30  # an error, not a hang until some deadline
        # the server still serves TLS clients
        ok = _stream(address, "cam-a", ClientSecurity(ca=pki.ca_pem, token=token))
        assert ok.error is None and ok.scores


def test_plaintext_server_checks_no_credentials_and_says_so(caplog) -> None:
    with caplog.at_level("INFO", logger="ingest.server"), serving(FakeEngine(), ServerConfig(port=0)) as (address, _):
        report = _stream(address, "any-device", None)
    assert report.error is None and report.scores
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("security:")]
    assert len(lines) == 1 and "PLAINTEXT" in lines[0] and "no credential check" in lines[0]


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"host": "0.0.0.0"}, "host: plaintext on '0.0.0.0'"),
        ({"tls_cert": "x.pem"}, "tls_cert and tls_key"),
        ({"client_ca": "ca.pem"}, "client_ca: mutual TLS needs"),
    ],
)
def test_unsafe_security_settings_are_refused_at_start_up(fields: dict, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        ServerConfig(**fields)
    assert needle in str(info.value)


def test_tls_without_client_ca_needs_a_token_key_and_insecure_allows_plaintext_anywhere(pki: Pki) -> None:
    with pytest.raises(ValueError, match="token_key"):
        ServerConfig(tls_cert=pki.server_cert, tls_key=pki.server_key)
    assert ServerConfig(host="0.0.0.0", insecure=True).security.mode == "plaintext"
    assert ServerConfig(host="::1").security.mode == "plaintext"


def test_token_cli_mints_a_token_the_public_key_verifies(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "petstream.cli", "token"]
    key = str(tmp_path / "ed.key")
    subprocess.run([*cli, "keygen", "--out", key, "--algorithm", "EdDSA"], check=True, capture_output=True)
    out = subprocess.run(
        [*cli, "issue", "--device", "furbo-42", "--ttl", "30d", "--key", key],
        check=True,
        capture_output=True,
        text=True,
    )
    claims = tokens.verify(tokens.load_key(key + ".pub"), out.stdout.strip())
    assert claims.device_id == "furbo-42" and abs(claims.expires_at - time.time() - 30 * 86400) < 60
    assert (Path(key).stat().st_mode & 0o777) == 0o600
    bad = subprocess.run([*cli, "issue", "--device", "x", "--key", key + ".pub"], capture_output=True, text=True)
    assert bad.returncode == 2 and "public key" in bad.stderr


def test_the_events_client_reads_over_tls_with_a_token_only_its_own_devices(pki: Pki, hmac_key: str) -> None:
    from simulators.subscriber import list_events

    key = tokens.load_key(hmac_key)
    tls = {"ca": pki.ca_pem}
    cfg = ServerConfig(port=0, tls_cert=pki.server_cert, tls_key=pki.server_key, token_key=hmac_key)
    with serving(FakeEngine(), cfg) as (address, _server):
        token_a = tokens.issue(key, "cam-a", 3600)
        for device, token in (("cam-a", token_a), ("cam-b", tokens.issue(key, "cam-b", 3600))):
            _assert_streamed_own_events(_stream(address, device, ClientSecurity(**tls, token=token)), device)
        mine = asyncio.run(list_events(address, security=ClientSecurity(**tls, token=token_a)))
        assert mine and {r.event.device_id for r in mine} == {"cam-a"}
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            asyncio.run(list_events(address, security=ClientSecurity(**tls), connect_timeout_s=5))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        cli = [sys.executable, "-m", "petstream.cli", "events", "list", "--target", address, "--ca", pki.ca_pem]
        out = subprocess.run([*cli, "--token", token_a], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert [json.loads(line)["event_id"] for line in out.stdout.splitlines()] == [r.event.event_id for r in mine]
