"""Who is calling: one server interceptor turns an mTLS certificate or a bearer token into an Identity.

The interceptor establishes *who* calls; the stream's device id is only known once its first message is read, so
the handler checks it with `bind_device` (the only place that decision is made). Refusals raised by either are
answered and counted here, by reason, in `AuthInterceptor.refusals`.
"""

from __future__ import annotations

import contextvars
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import grpc

from ingest import tokens
from ingest.certs import DEVICE_URI_PREFIX

log = logging.getLogger(__name__)

AuthMode = Literal["none", "token", "certificate"]
Reason = Literal[
    "no_credentials", "bad_token", "expired_token", "no_device_in_certificate", "wrong_device", "not_admin"
]
REASONS: tuple[Reason, ...] = (
    "no_credentials",
    "bad_token",
    "expired_token",
    "no_device_in_certificate",
    "wrong_device",
    "not_admin",
)
ADMIN = "admin"  # the role that may call the Admin service (token claim 'role', or a role SAN in a certificate)
ROLE_URI_PREFIX = "urn:petstream:role:"
# Reachable without credentials: load balancers and operators probe these.
PUBLIC_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


@dataclass(frozen=True)
class Identity:
    """A proven caller: the devices it may act for. `method` 'none' (plaintext, no check) may act for any."""

    subject: str  # for logs: the certificate subject or token subject
    device_ids: frozenset[str]
    method: AuthMode
    roles: frozenset[str] = frozenset()  # e.g. {"admin"}: an operator, who opens no camera stream

    def may_open(self, device_id: str) -> bool:
        return self.method == "none" or device_id in self.device_ids

    def may_admin(self) -> bool:
        """Plaintext (loopback, no credential check at all) or a proven admin role."""
        return self.method == "none" or ADMIN in self.roles


ANONYMOUS = Identity("anyone (plaintext, no credential check)", frozenset(), "none")
NOBODY = Identity("nobody", frozenset(), "token")  # the default outside an authenticated call: may open nothing


class Refused(Exception):
    """A call refused for who it is: gRPC code, a fixed reason key (counted) and a message for the camera."""

    def __init__(self, code: grpc.StatusCode, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


_current: contextvars.ContextVar[Identity] = contextvars.ContextVar("petstream_identity", default=NOBODY)


def current_identity() -> Identity:
    """The identity the interceptor established for the call being handled (NOBODY outside one)."""
    return _current.get()


def bind_device(identity: Identity, device_id: str) -> None:
    """The one check that a stream's device_id belongs to its caller; raises Refused(PERMISSION_DENIED)."""
    if identity.may_open(device_id):
        return
    allowed = ", ".join(repr(d) for d in sorted(identity.device_ids)) or "no device"
    raise Refused(
        grpc.StatusCode.PERMISSION_DENIED,
        "wrong_device",
        f"{identity.method} for {identity.subject!r} may open {allowed}, not device_id {device_id!r}",
    )


def require_admin(identity: Identity) -> None:
    """The one check that a caller may change how the server runs (the Admin service)."""
    if not identity.may_admin():
        raise Refused(
            grpc.StatusCode.PERMISSION_DENIED,
            "not_admin",
            f"{identity.method} for {identity.subject!r} has no admin role: "
            "use a token from `petstream token issue --role admin` (or a certificate with an admin role SAN)",
        )


class Authenticator:
    """The policy: which credentials count in this server's mode, and the identity they prove."""

    def __init__(self, mode: AuthMode, token_key: tokens.TokenKey | None = None) -> None:
        if mode == "token" and token_key is None:
            raise ValueError("token authentication needs a token key")
        self.mode = mode
        self._key = token_key

    def identify(self, metadata: Sequence[tuple[str, Any]], auth_context: Mapping[str, Sequence[bytes]]) -> Identity:
        if self.mode == "none":
            return ANONYMOUS
        if self.mode == "certificate":
            return _certificate_identity(auth_context)
        assert self._key is not None
        token = bearer_token(metadata)
        try:
            claims = tokens.verify(self._key, token)
        except tokens.TokenError as exc:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, exc.reason, str(exc)) from None
        if claims.role == ADMIN:  # an operator's token opens no camera stream
            return Identity(claims.device_id, frozenset(), "token", frozenset({ADMIN}))
        return Identity(claims.device_id, frozenset({claims.device_id}), "token")


def bearer_token(metadata: Sequence[tuple[str, Any]]) -> str:
    """The token of `authorization: Bearer <token>`; Refused(UNAUTHENTICATED) when absent or malformed."""
    values = [v for k, v in metadata if k.lower() == "authorization"]
    if not values:
        raise Refused(
            grpc.StatusCode.UNAUTHENTICATED, "no_credentials", "no credentials: send 'authorization: Bearer <token>'"
        )
    value = values[0].decode(errors="replace") if isinstance(values[0], bytes) else str(values[0])
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(grpc.StatusCode.UNAUTHENTICATED, "bad_token", "authorization metadata must be 'Bearer <token>'")
    return token.strip()


def _certificate_identity(auth_context: Mapping[str, Sequence[bytes]]) -> Identity:
    """Device ids a verified client certificate names: its subject CN and its SANs (urn:petstream:device:ID -> ID)."""
    cns = [v.decode(errors="replace") for v in auth_context.get("x509_common_name", ())]
    if not auth_context.get("x509_pem_cert") and not cns:
        # only reachable if the TLS layer let a call through without a client certificate
        raise Refused(grpc.StatusCode.UNAUTHENTICATED, "no_credentials", "no client certificate was presented")
    names = set(cns)
    roles: set[str] = set()
    for raw in auth_context.get("x509_subject_alternative_name", ()):
        san = raw.decode(errors="replace")
        if san.startswith(ROLE_URI_PREFIX):
            roles.add(san.removeprefix(ROLE_URI_PREFIX))
            continue
        names.add(san.removeprefix(DEVICE_URI_PREFIX))
    names.discard("")
    subject = cns[0] if cns else "certificate without CN"
    if ADMIN in roles:  # an operator's certificate opens no camera stream
        return Identity(subject, frozenset(), "certificate", frozenset(roles))
    if not names:
        raise Refused(
            grpc.StatusCode.UNAUTHENTICATED,
            "no_device_in_certificate",
            "the client certificate names no device (subject CN or SAN)",
        )
    return Identity(subject, frozenset(names), "certificate")


async def drain(requests: AsyncIterator[Any]) -> None:
    """Before a refusal, read what the camera is still writing (see readahead.drain_unread)."""
    from ingest.readahead import drain_unread  # the server side's reader, shared with refused opens

    await drain_unread(requests, "refused-call")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """The one place credentials are checked: every method except health and reflection needs an identity."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self.refusals: Counter[str] = Counter()  # by Reason: what metrics export

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method  # "/package.Service/Method"
        if handler is None or method.lstrip("/").split("/")[0] in PUBLIC_SERVICES:
            return handler
        return self._wrap(handler, tuple(handler_call_details.invocation_metadata or ()))

    def refuse(self, context: grpc.aio.ServicerContext, exc: Refused) -> Awaitable[None]:
        self.refusals[exc.reason] += 1
        log.info("refused %s: %s (%s)", context.peer(), exc.message, exc.reason)
        return context.abort(exc.code, exc.message)

    def _identify(self, metadata: Sequence[tuple[str, Any]], context: grpc.aio.ServicerContext) -> Identity:
        return self.authenticator.identify(
            metadata, context.auth_context() if self.authenticator.mode != "none" else {}
        )

    def _wrap(self, handler: grpc.RpcMethodHandler, metadata: Sequence[tuple[str, Any]]) -> grpc.RpcMethodHandler:
        if handler.request_streaming and handler.response_streaming:
            inner_ss = handler.stream_stream

            async def stream_stream(
                requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                try:
                    _current.set(self._identify(metadata, context))
                    async for reply in inner_ss(requests, context):
                        yield reply
                except Refused as exc:
                    await drain(requests)
                    await self.refuse(context, exc)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        if not handler.request_streaming and not handler.response_streaming:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    _current.set(self._identify(metadata, context))
                    return await inner_uu(request, context)
                except Refused as exc:
                    await self.refuse(context, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if not handler.request_streaming and handler.response_streaming:  # Events.WatchEvents
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    _current.set(self._identify(metadata, context))
                    async for reply in inner_us(request, context):
                        yield reply
                except Refused as exc:
                    await self.refuse(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        # no other shapes are served; refuse rather than pass a new one through unchecked
        raise NotImplementedError("AuthInterceptor: stream-unary methods are not wrapped")
