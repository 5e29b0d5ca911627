"""`petstream token` (mint and make token keys) and `petstream certs` (a throwaway test CA): registered by ingest."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser(
        "token",
        help="bearer tokens for cameras (signed, expiring JWTs)",
        description="Bearer tokens for cameras: make a key, then mint a signed, expiring token per device; the "
        "server verifies them with --token-key (docs/security.md).",
        epilog="examples:\n  petstream token keygen --out token.key\n"
        "  petstream token issue --key token.key --device furbo-42 --ttl 30d",
    )
    tok_sub = tok.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = tok_sub.add_parser(
        "issue",
        help="mint a token for one device from a key file; prints it",
        description="Mint a token for one device from a key file and print it.",
        epilog="example:\n  petstream token issue --key token.key --device furbo-42 --ttl 7d > furbo-42.token",
    )
    issue.add_argument(
        "--device", required=True, metavar="ID", help="device id the token lets its bearer open (required)"
    )
    issue.add_argument(
        "--ttl", default="30d", metavar="DURATION", help="lifetime: N with unit s, m, h or d (default: 30d)"
    )
    issue.add_argument(
        "--key", required=True, metavar="PATH", help="HMAC secret or Ed25519 private key file (required)"
    )
    issue.add_argument(
        "--role",
        choices=["admin"],
        help="admin: a token for operator --device that may call the Admin service, not open streams (default: none)",
    )
    issue.set_defaults(func=_issue)
    keygen = tok_sub.add_parser(
        "keygen",
        help="write a new token key file (mode 0600)",
        description="Write a new token key file (mode 0600); EdDSA also writes the public key the server needs.",
        epilog="example:\n  petstream token keygen --out token.key --algorithm EdDSA",
    )
    keygen.add_argument(
        "--out", required=True, metavar="PATH", help="key file to write; EdDSA also writes OUT.pub (required)"
    )
    keygen.add_argument(
        "--algorithm", choices=["HS256", "EdDSA"], default="EdDSA", help="HMAC-SHA256 or Ed25519 (default: EdDSA)"
    )
    keygen.set_defaults(func=_keygen)

    certs = sub.add_parser(
        "certs",
        help="make a throwaway test CA, server and camera certificates (not for production)",
        description="Make a throwaway test CA with a server certificate and one client certificate per camera, "
        "for trying mutual TLS (not for production).",
        epilog="example:\n  petstream certs --out pki/ --device cam-1 --device cam-2",
    )
    certs.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="folder to write ca.pem, server.pem/.key, DEVICE.pem/.key (required)",
    )
    certs.add_argument(
        "--device", action="append", default=[], metavar="ID", help="a camera's device id; repeat (default: none)"
    )
    certs.add_argument(
        "--server-name",
        action="append",
        metavar="NAME",
        default=[],
        help="DNS name or IP of the server certificate; repeat (default: localhost, 127.0.0.1, ::1)",
    )
    certs.set_defaults(func=_certs)


def _issue(args: argparse.Namespace) -> int:
    from ingest import tokens

    try:
        key = tokens.load_key(args.key)
        token = tokens.issue(key, args.device, tokens.parse_ttl(args.ttl), role=args.role)
    except ValueError as exc:
        print(f"petstream token issue: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from ingest import tokens

    for path in tokens.generate_key(args.out, args.algorithm):
        print(f"wrote {path}")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from ingest.certs import write_test_pki

    names = tuple(args.server_name) or ("localhost", "127.0.0.1", "::1")
    for name, path in write_test_pki(args.out, args.device, server_names=names).items():
        print(f"{name}: {path}")
    return 0
