"""The transport port: how a request reaches a service and its reply comes back.

A client sends ``(subject, message, headers)`` and gets a ``Response``. The
in-process transport here routes to registered service bindings; the NATS
transport (``eventstore.nats``; HTTP later) carries the same request over a
wire and its host uses the same ``Router``, so the middleware chain runs the
same on every path (DESIGN decision 10). Nothing here opens a socket.

The pieces live by concept: ``headers`` (the ``Es-*`` headers),
``responses`` (the reply, its wire form, the one table of error codes,
docs/errors.md) and ``routing``
(routes, middlewares, the ``Router``). Generated code and applications
import all of them from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from google.protobuf.message import Message

from .headers import (
    COMMAND_ID_HEADER,
    CORRELATION_ID_HEADER,
    CUSTOM_METADATA_PREFIX,
    PRINCIPAL_ID_HEADER,
    TENANT_ID_HEADER,
    metadata_headers,
)
from .identity import Principal
from .responses import (
    COMMAND_ID_CONFLICT,
    CONCURRENCY_CONFLICT,
    INTERNAL,
    INVALID_MESSAGE_TYPE,
    INVALID_RESPONSE_TYPE,
    NO_HANDLER,
    NOT_FOUND,
    TIMEOUT,
    UNAVAILABLE,
    UNIQUE_CONSTRAINT,
    Response,
    app_error_for,
    transport_timeout,
    transport_unavailable,
)
from .routing import (
    Handler,
    Middleware,
    NextCall,
    RequestContext,
    Route,
    Router,
    ServiceBinding,
)


@runtime_checkable
class Transport(Protocol):
    """Sends a request to whatever serves ``subject`` and returns its reply."""

    async def request(
        self, subject: str, message: Message, headers: Mapping[str, str] | None = None
    ) -> Response: ...


class InProcessTransport:
    """A transport whose services run in this process (notebooks, tests, one-process apps).

    Messages are passed as objects, not bytes; everything else (type checks,
    middlewares, error replies) is what a remote transport's server does.

    Identity: the caller is in this process, so it is trusted to say who it
    acts as. ``principal=`` (here or per request) is that principal; without
    one, an ``Es-Principal-Id`` header (``metadata={"principal_id": ...}`` on
    a generated client) names it, and ``Es-Tenant-Id`` the tenant it acts for.
    Network hosts never do this: they authenticate.
    """

    def __init__(
        self,
        *bindings: ServiceBinding | Route,
        middlewares: Iterable[Middleware] = (),
        principal: Principal | None = None,
    ) -> None:
        self.router = Router(middlewares)
        self.principal = principal
        for binding in bindings:
            self.router.register(binding)

    def register(self, binding: ServiceBinding | Route) -> InProcessTransport:
        self.router.register(binding)
        return self

    def use(self, middleware: Middleware) -> InProcessTransport:
        self.router.use(middleware)
        return self

    async def request(
        self,
        subject: str,
        message: Message,
        headers: Mapping[str, str] | None = None,
        *,
        principal: Principal | None = None,
    ) -> Response:
        headers = headers or {}
        tenant = headers.get(TENANT_ID_HEADER, "")
        principal = principal or self.principal
        if principal is None and headers.get(PRINCIPAL_ID_HEADER):
            principal = Principal(headers[PRINCIPAL_ID_HEADER], tenants=(tenant,) if tenant else ())
        return await self.router.dispatch(
            subject, message, headers, principal=principal, tenant=tenant or None
        )


__all__ = [
    "COMMAND_ID_CONFLICT",
    "COMMAND_ID_HEADER",
    "CONCURRENCY_CONFLICT",
    "CORRELATION_ID_HEADER",
    "CUSTOM_METADATA_PREFIX",
    "INTERNAL",
    "INVALID_MESSAGE_TYPE",
    "INVALID_RESPONSE_TYPE",
    "NOT_FOUND",
    "NO_HANDLER",
    "PRINCIPAL_ID_HEADER",
    "TENANT_ID_HEADER",
    "TIMEOUT",
    "UNAVAILABLE",
    "UNIQUE_CONSTRAINT",
    "Handler",
    "InProcessTransport",
    "Middleware",
    "NextCall",
    "RequestContext",
    "Response",
    "Route",
    "Router",
    "ServiceBinding",
    "Transport",
    "app_error_for",
    "metadata_headers",
    "transport_timeout",
    "transport_unavailable",
]
