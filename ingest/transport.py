"""Transport security of the server: plaintext (loopback unless --insecure), TLS + tokens, or mutual TLS."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

from ingest import tokens
from ingest.auth import Authenticator

TransportMode = Literal["plaintext", "tls", "mtls"]


@dataclass(frozen=True)
class SecuritySettings:
    """The security fields of ServerConfig (kept apart so clients and tests can build them alone)."""

    host: str = "127.0.0.1"
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    token_key: str | None = None
    insecure: bool = False

    @property
    def mode(self) -> TransportMode:
        if self.tls_cert is None:
            return "plaintext"
        return "mtls" if self.client_ca else "tls"

    def validate(self) -> None:
        """Raise ValueError naming the field when the combination cannot run safely."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key: give both (the server certificate and its private key) or neither")
        if self.client_ca and not self.tls_cert:
            raise ValueError("client_ca: mutual TLS needs the server's own tls_cert and tls_key too")
        if self.mode == "tls" and not self.token_key:
            raise ValueError(
                "token_key: TLS without client_ca authenticates cameras by token; give token_key "
                "(or client_ca for certificates)"
            )
        if self.mode == "plaintext" and not self.insecure and not is_loopback(self.host):
            raise ValueError(
                f"host: plaintext on {self.host!r} would expose the cameras' video and events without credentials; "
                "give tls_cert/tls_key (and client_ca or token_key), bind 127.0.0.1, or pass insecure to insist"
            )
        for name in ("tls_cert", "tls_key", "client_ca", "token_key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: {path!r} is not a readable file")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; '' and 0.0.0.0 / :: (every interface) are not."""
    h = host.strip().strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def server_credentials(s: SecuritySettings) -> grpc.ServerCredentials | None:
    """None for plaintext. With a client CA the client certificate is *required*: grpcio 1.85 does not even ask
    for one when it is optional, so an optional certificate could never identify anyone (DESIGN.md)."""
    if s.mode == "plaintext":
        return None
    assert s.tls_cert is not None and s.tls_key is not None
    pair = [(Path(s.tls_key).read_bytes(), Path(s.tls_cert).read_bytes())]
    if s.mode == "mtls":
        assert s.client_ca is not None
        return grpc.ssl_server_credentials(
            pair, root_certificates=Path(s.client_ca).read_bytes(), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


def authenticator(s: SecuritySettings) -> Authenticator:
    if s.mode == "plaintext":
        return Authenticator("none")
    if s.mode == "mtls":
        return Authenticator("certificate")
    assert s.token_key is not None
    return Authenticator("token", tokens.load_key(s.token_key))


def describe(s: SecuritySettings, address: str) -> str:
    """The one log line that says how this server can be reached and who gets in."""
    if s.mode == "plaintext":
        where = "loopback only" if is_loopback(s.host) else "NOT loopback: --insecure was given"
        return f"security: PLAINTEXT on {address} ({where}); no credential check: any caller may open any device_id"
    if s.mode == "mtls":
        return f"security: mutual TLS on {address}; cameras identified by client certificates from {s.client_ca}"
    return f"security: TLS on {address}; cameras identified by bearer tokens verified with {s.token_key}"
