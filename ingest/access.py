"""Who may read which devices' events: the one authorization decision behind WatchEvents and ListEvents."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from ingest import auth
from ingest.wire import MAX_DEVICE_ID

#: the devices a caller may read; None = every device (a backend's credential, or plaintext mode)
Allowed = frozenset[str] | None
#: the hook: the call's context (its identity) -> the devices it may read
AccessPolicy = Callable[[grpc.aio.ServicerContext], Allowed]
MAX_DEVICES_PER_REQUEST = 1000


class AccessDenied(Exception):
    """The caller asked for a device its credentials do not cover (PERMISSION_DENIED)."""


#: a certificate or token naming this device is a backend's credential: it reads every device's events
BACKEND_DEVICE = "*"


def everyone(context: grpc.aio.ServicerContext) -> Allowed:
    """No check at all (tests of the layer itself)."""
    return None


def by_identity(context: grpc.aio.ServicerContext) -> Allowed:
    """The server's policy: the identity the AuthInterceptor established for this call. Plaintext mode (no
    credential check) reads everything, like every other method; a camera's certificate or token reads the devices
    it names (its own); a backend's credential (device `*`) reads every device."""
    identity = auth.current_identity()
    if identity.method == "none" or BACKEND_DEVICE in identity.device_ids:
        return None
    return identity.device_ids


def devices_to_read(requested: Sequence[str], allowed: Allowed) -> Allowed:
    """The devices a request reads: those it names (all it may see if none), never beyond `allowed`.

    Raises ValueError for a malformed request, AccessDenied for a device outside the caller's credentials."""
    if len(requested) > MAX_DEVICES_PER_REQUEST:
        raise ValueError(f"device_ids: {len(requested)} given, at most {MAX_DEVICES_PER_REQUEST} allowed")
    asked = frozenset(d.strip() for d in requested)
    if "" in asked:
        raise ValueError("device_ids: an entry is empty")
    if any(len(d) > MAX_DEVICE_ID for d in asked):
        raise ValueError(f"device_ids: an entry is longer than {MAX_DEVICE_ID} characters")
    if allowed is None:
        return asked or None
    if not asked:
        return allowed
    outside = asked - allowed
    if outside:
        shown = ", ".join(repr(d) for d in sorted(allowed)) or "no device"
        raise AccessDenied(f"these credentials may read the events of {shown}, not of {sorted(outside)}")
    return asked
