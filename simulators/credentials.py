"""Client-side transport security for every petstream client: plaintext, TLS, mTLS, bearer tokens."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True, repr=False)
class ClientSecurity:
    """How a client reaches the server. Nothing set = plaintext (loopback servers); any field set = TLS."""

    ca: str | None = None  # PEM of the CA that signed the server's certificate; None = the system's roots
    cert: str | None = None  # this camera's client certificate (mutual TLS)
    key: str | None = None  # its private key
    token: str | None = None  # bearer token (`petstream token issue`), sent as 'authorization: Bearer ...'
    server_name: str | None = None  # expected name in the server certificate when it differs from the target host

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("--cert and --key: give both (client certificate and its private key) or neither")

    @property
    def tls(self) -> bool:
        return any((self.ca, self.cert, self.token, self.server_name))

    def __repr__(self) -> str:  # never print a token
        mode = "plaintext" if not self.tls else ("mTLS" if self.cert else "TLS")
        return f"ClientSecurity({mode}, token={'yes' if self.token else 'no'})"

    def describe(self) -> str:
        if not self.tls:
            return "plaintext (no TLS, no credentials)"
        who = "client certificate" if self.cert else ("bearer token" if self.token else "no credentials")
        return f"TLS ({who})"


PLAINTEXT = ClientSecurity()


def open_channel(
    target: str, security: ClientSecurity | None, options: Sequence[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """A grpc.aio channel to `target` with the transport and call credentials `security` asks for."""
    options = list(options or [])
    s = security or PLAINTEXT
    if not s.tls:
        return grpc.aio.insecure_channel(target, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(s.ca),
        private_key=_read(s.key),
        certificate_chain=_read(s.cert),
    )
    if s.token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(s.token))
    if s.server_name:
        options.append(("grpc.ssl_target_name_override", s.server_name))
    return grpc.aio.secure_channel(target, creds, options=options)


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The client security options every petstream client takes."""
    g = p.add_argument_group("transport security (default: plaintext, for a server on loopback)")
    g.add_argument(
        "--ca",
        metavar="PATH",
        help="CA certificate (PEM) the server's certificate must chain to; turns on TLS (default: none)",
    )
    g.add_argument(
        "--cert", metavar="PATH", help="client certificate (PEM) naming this device, for mutual TLS (default: none)"
    )
    g.add_argument("--key", metavar="PATH", help="private key (PEM) of --cert (default: none)")
    g.add_argument(
        "--token", metavar="TOKEN", help="bearer token from `petstream token issue`; turns on TLS (default: none)"
    )
    g.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the bearer token from this file instead of --token (default: none)",
    )
    g.add_argument(
        "--server-name",
        metavar="NAME",
        help="name expected in the server certificate, if not the target host (default: none)",
    )


def from_args(args: argparse.Namespace) -> ClientSecurity:
    token = args.token
    if getattr(args, "token_file", None):
        token = Path(args.token_file).read_text().strip()
    return ClientSecurity(ca=args.ca, cert=args.cert, key=args.key, token=token, server_name=args.server_name)
