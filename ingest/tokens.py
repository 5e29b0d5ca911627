"""Device tokens: signed, expiring JWTs (HS256 or EdDSA/Ed25519) minted from a key file, verified by the server."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

Algorithm = Literal["HS256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("HS256", "EdDSA")
AUDIENCE = "petstream"  # a token minted for something else is refused even if the key is shared
LEEWAY_S = 60  # camera clocks drift; an expiry this close is still accepted
MIN_SECRET_BYTES = 32
_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TokenError(ValueError):
    """A token that does not prove anything; `reason` is a short fixed key (for counting), the text says why."""

    def __init__(self, reason: Literal["bad_token", "expired_token"], message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, repr=False)
class TokenKey:
    """A key file's contents: an HMAC secret (any text file) or an Ed25519 key in PEM (private or public)."""

    algorithm: Algorithm
    signing: bytes | Ed25519PrivateKey | None  # None: a public key, which can only verify
    verifying: bytes | Ed25519PublicKey

    def __repr__(self) -> str:  # never print a secret
        return f"TokenKey({self.algorithm}, can_sign={self.signing is not None})"


def load_key(path: str) -> TokenKey:
    """Read a key file: PEM Ed25519 (private signs and verifies, public only verifies) or an HMAC secret."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"token key {path!r} cannot be read: {exc.strerror}") from None
    if raw.lstrip().startswith(b"-----BEGIN"):
        return _load_pem(path, raw)
    secret = raw.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"token key {path!r}: an HMAC secret needs at least {MIN_SECRET_BYTES} bytes")
    return TokenKey("HS256", secret, secret)


def _load_pem(path: str, raw: bytes) -> TokenKey:
    if b"PRIVATE KEY" in raw:
        key = serialization.load_pem_private_key(raw, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"token key {path!r}: only Ed25519 private keys are supported")
        return TokenKey("EdDSA", key, key.public_key())
    pub = serialization.load_pem_public_key(raw)
    if not isinstance(pub, Ed25519PublicKey):
        raise ValueError(f"token key {path!r}: only Ed25519 public keys are supported")
    return TokenKey("EdDSA", None, pub)


def generate_key(path: str, algorithm: Algorithm) -> list[str]:
    """Write a new key file (mode 0600); for EdDSA also `path`.pub, the public half the server may hold instead."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r} is not one of {list(ALGORITHMS)}")
    out = Path(path)
    if algorithm == "HS256":
        _write_private(out, (secrets.token_urlsafe(48) + "\n").encode())
        return [str(out)]
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(out, pem)
    pub = Path(f"{path}.pub")
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return [str(out), str(pub)]


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def parse_ttl(text: str) -> float:
    """'30d', '12h', '15m', '90s' or plain seconds -> seconds (> 0)."""
    m = _TTL.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"ttl {text!r}: give a positive number with an optional unit s, m, h or d (e.g. 30d)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


ROLES = ("admin",)  # a token with a role names an operator (its 'sub'), not a device


def issue(key: TokenKey, device_id: str, ttl_s: float, *, now: float | None = None, role: str | None = None) -> str:
    """A token that lets its bearer open `device_id`'s stream (and Ask) until now + ttl_s; with `role` "admin",
    one that lets operator `device_id` call the Admin service instead (and open no stream)."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {list(ROLES)}")
    if key.signing is None:
        raise ValueError("this key file holds only a public key: tokens are minted with the private key")
    if not device_id.strip():
        raise ValueError("device id is empty")
    now = time.time() if now is None else now
    claims = {
        "sub": device_id,
        "aud": AUDIENCE,
        "iat": int(now),
        "exp": int(now + ttl_s),
        "jti": uuid.uuid4().hex,  # lets an operator name (and one day revoke) one token
    }
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, key.signing, algorithm=key.algorithm)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    device_id: str
    expires_at: float
    role: str | None = None


def verify(key: TokenKey, token: str) -> TokenClaims:
    """Check signature, audience and expiry; the algorithm is the key's, never the token header's."""
    try:
        claims = jwt.decode(
            token,
            key.verifying,  # type: ignore[arg-type]
            algorithms=[key.algorithm],
            audience=AUDIENCE,
            leeway=LEEWAY_S,
            options={"require": ["exp", "sub", "aud"], "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("expired_token", "the token has expired: mint a new one") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError("bad_token", f"the token is not valid: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise TokenError("bad_token", "the token names no device (claim 'sub')")
    role = claims.get("role")
    if role is not None and role not in ROLES:
        raise TokenError("bad_token", f"the token's role {role!r} is not one of {list(ROLES)}")
    return TokenClaims(sub, float(claims["exp"]), role)
