"""The transport port: how a request reaches a service and its reply comes back.

A client sends ``(subject, message, headers)`` and gets a ``Response``. The
in-process transport here routes to registered service bindings; the NATS and
HTTP transports (later) carry the same request over a wire and use the same
``Router`` on the server side, so the middleware chain runs the same on every
path (DESIGN decision 10). Nothing here opens a socket.

On a wire the reply is the ``eventsourcing.Response`` proto (success, AppError,
``Any`` data); ``Response.to_proto``/``from_proto`` convert.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from ..proto.eventsourcing import response_pb2
from .errors import (
    AggregateNotFoundError,
    AppError,
    ConcurrencyError,
    UniqueConstraintError,
    UniqueConstraintReleaseError,
    VersionNotFoundError,
)
from .events import EventMetadata
from .ids import new_command_id

log = logging.getLogger("eventstore.transport")

M = TypeVar("M", bound=Message)

#: Header carrying the command id; a retry with the same id is applied once.
COMMAND_ID_HEADER = "Es-Command-Id"
CORRELATION_ID_HEADER = "Es-Correlation-Id"
PRINCIPAL_ID_HEADER = "Es-Principal-Id"
TENANT_ID_HEADER = "Es-Tenant-Id"
#: Prefix of headers carrying ``EventMetadata.custom`` entries.
CUSTOM_METADATA_PREFIX = "Es-Meta-"

#: Error codes the transport itself produces.
INVALID_MESSAGE_TYPE = "INVALID_MESSAGE_TYPE"
INVALID_RESPONSE_TYPE = "INVALID_RESPONSE_TYPE"
NO_HANDLER = "NO_HANDLER"
INTERNAL = "INTERNAL"
#: Error codes of the framework's own errors raised inside a handler (see ``framework_error``).
NOT_FOUND = "NOT_FOUND"
CONCURRENCY_CONFLICT = "CONCURRENCY_CONFLICT"
UNIQUE_CONSTRAINT = "UNIQUE_CONSTRAINT"


def metadata_headers(metadata: EventMetadata | Mapping[str, str] | None) -> dict[str, str]:
    """Headers that carry ``metadata`` to the handler (``RequestContext.metadata`` reads them).

    A mapping may use the keys ``correlation_id``, ``principal_id`` and
    ``tenant_id``; any other key becomes a custom metadata entry.
    """
    if metadata is None:
        return {}
    if isinstance(metadata, EventMetadata):
        fields = {
            "correlation_id": metadata.correlation_id,
            "principal_id": metadata.principal_id,
            "tenant_id": metadata.tenant_id,
        }
        custom: Mapping[str, str] = metadata.custom
    else:
        fields = {k: v for k, v in metadata.items() if k in _METADATA_HEADERS}
        custom = {k: v for k, v in metadata.items() if k not in _METADATA_HEADERS}
    headers = {_METADATA_HEADERS[k]: v for k, v in fields.items() if v}
    headers.update({CUSTOM_METADATA_PREFIX + k: v for k, v in custom.items()})
    return headers


_METADATA_HEADERS = {
    "correlation_id": CORRELATION_ID_HEADER,
    "principal_id": PRINCIPAL_ID_HEADER,
    "tenant_id": TENANT_ID_HEADER,
}


@dataclass(slots=True)
class RequestContext:
    """What a handler (and each middleware) knows about the request beside its message.

    ``command_id`` is the client's id for this request: pass it to
    ``Repository.save_with_command`` so that a retry is applied once.
    ``values`` is where middlewares leave what they found (a principal, a tenant).
    """

    subject: str
    command_id: str
    headers: Mapping[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def metadata(self) -> EventMetadata:
        """Event metadata for the events this request causes (causation: the command id)."""
        h = self.headers
        prefix = CUSTOM_METADATA_PREFIX
        return EventMetadata(
            causation_id=self.command_id,
            correlation_id=h.get(CORRELATION_ID_HEADER, "") or self.command_id,
            principal_id=h.get(PRINCIPAL_ID_HEADER, ""),
            tenant_id=h.get(TENANT_ID_HEADER, ""),
            custom={k[len(prefix) :]: v for k, v in h.items() if k.startswith(prefix)},
        )


@dataclass(frozen=True, slots=True)
class Response:
    """A reply: ``data`` on success, ``error`` otherwise.

    ``data`` is the reply message, or a ``google.protobuf.Any`` holding it when
    the reply came over a wire; ``unwrap`` gives the typed message either way.
    ``exception`` is set only in process, for an unexpected failure behind an
    ``INTERNAL`` error, so its traceback is not lost.
    """

    success: bool
    data: Message | None = None
    error: AppError | None = None
    exception: BaseException | None = None

    @classmethod
    def ok(cls, data: Message | None) -> Response:
        return cls(True, data)

    @classmethod
    def failure(cls, error: AppError, exception: BaseException | None = None) -> Response:
        return cls(False, None, error, exception)

    def unwrap(self, response_type: type[M]) -> M:
        """The reply as ``response_type``; raises the AppError of a failed request."""
        if not self.success:
            error = self.error or AppError(INTERNAL, "the request failed without an error")
            if self.exception is not None:
                raise error from self.exception
            raise error
        expected = response_type.DESCRIPTOR.full_name
        data = self.data
        if data is None:
            return response_type()
        if isinstance(data, response_type):
            return data
        name = data.DESCRIPTOR.full_name
        payload: bytes
        if name == "google.protobuf.Any":
            type_url: str = data.type_url  # type: ignore[attr-defined]
            name = type_url.rpartition("/")[2]
            payload = data.value  # type: ignore[attr-defined]
        else:
            payload = data.SerializeToString()
        if name != expected:
            raise AppError(
                INVALID_RESPONSE_TYPE,
                f"expected a reply of type {expected}, got {name}",
                "Regenerate the client and the server from the same proto.",
                {"expected": expected, "actual": name},
            )
        try:
            return response_type.FromString(payload)
        except DecodeError as exc:
            raise AppError(
                INVALID_RESPONSE_TYPE, f"the reply does not parse as {expected}: {exc}"
            ) from exc

    def to_proto(self) -> response_pb2.Response:
        """The ``eventsourcing.Response`` message sent over a wire."""
        out = response_pb2.Response(success=self.success)
        if self.data is not None:
            if self.data.DESCRIPTOR.full_name == "google.protobuf.Any":
                out.data.ParseFromString(self.data.SerializeToString())
            else:
                out.data.Pack(self.data)
        if self.error is not None:
            out.error.code = self.error.code
            out.error.message = self.error.message
            out.error.solution = self.error.solution
            out.error.details.update(self.error.details)
        return out

    @classmethod
    def from_proto(cls, message: response_pb2.Response) -> Response:
        error = None
        if message.HasField("error"):
            e = message.error
            error = AppError(e.code, e.message, e.solution, dict(e.details))
        data: Message | None = None
        if message.HasField("data"):
            data = any_pb2.Any()
            data.CopyFrom(message.data)
        return cls(message.success, data, error)


@runtime_checkable
class Transport(Protocol):
    """Sends a request to whatever serves ``subject`` and returns its reply."""

    async def request(
        self, subject: str, message: Message, headers: Mapping[str, str] | None = None
    ) -> Response: ...


Handler = Callable[[Message, RequestContext], "Message | Awaitable[Message]"]
"""A service method: plain or ``async``, raising ``AppError`` for business errors."""

NextCall = Callable[[Message, RequestContext], Awaitable[Message]]
"""The rest of the chain, as a middleware sees it."""

Middleware = Callable[[Message, RequestContext, NextCall], Awaitable[Message]]
"""``async def mw(message, ctx, call_next) -> reply``: wraps every handler call.

A middleware may inspect or change the context, reject the request by raising
``AppError``, or call ``await call_next(message, ctx)`` and look at the reply.
"""


@dataclass(frozen=True, slots=True)
class Route:
    """One subject served by one handler."""

    subject: str
    request_type: type[Message]
    response_type: type[Message]
    handler: Handler


@runtime_checkable
class ServiceBinding(Protocol):
    """A server binding: the routes of one service (generated ``<Service>Server``)."""

    @property
    def routes(self) -> Sequence[Route]: ...


class Router:
    """Finds the route of a subject and runs the middleware chain around its handler.

    Every transport's server side uses this, so type checks, middlewares and
    error replies are the same in process and over a wire. Errors become
    replies here, outside the middlewares (so a middleware may still catch a
    ``ConcurrencyError`` and retry): ``AppError`` as it is, the framework's
    own errors by ``framework_error``, anything else ``INTERNAL``.
    """

    def __init__(self, middlewares: Iterable[Middleware] = ()) -> None:
        self._routes: dict[str, Route] = {}
        self._middlewares: list[Middleware] = list(middlewares)

    @property
    def subjects(self) -> list[str]:
        return sorted(self._routes)

    def route(self, subject: str) -> Route | None:
        return self._routes.get(subject)

    def register(self, binding: ServiceBinding | Route) -> None:
        routes = [binding] if isinstance(binding, Route) else list(binding.routes)
        for route in routes:
            if route.subject in self._routes:
                raise ValueError(
                    f"subject {route.subject!r} already has a handler; register each "
                    "service's server binding once per transport"
                )
        for route in routes:
            self._routes[route.subject] = route

    def use(self, middleware: Middleware) -> None:
        """Add a middleware; the first added runs outermost."""
        self._middlewares.append(middleware)

    async def dispatch(
        self, subject: str, message: Message, headers: Mapping[str, str] | None = None
    ) -> Response:
        headers = dict(headers or {})
        route = self._routes.get(subject)
        if route is None:
            known = ", ".join(self.subjects) or "none"
            return Response.failure(
                AppError(
                    NO_HANDLER,
                    f"no handler is registered for subject {subject!r} (registered: {known})",
                    "Register the service's server binding with the transport.",
                    {"subject": subject},
                )
            )
        ctx = RequestContext(subject, headers.get(COMMAND_ID_HEADER) or new_command_id(), headers)
        try:
            request = _as_request(route, message)
            call: NextCall = _invoker(route)
            for middleware in reversed(self._middlewares):
                call = _wrap(middleware, call)
            reply = await call(request, ctx)
        except AppError as error:
            return Response.failure(error)
        except Exception as exc:
            mapped = framework_error(exc)
            if mapped is not None:
                log.info("handler of %s refused the request: %s", subject, mapped.code)
                return Response.failure(mapped, exc)
            log.exception("handler of %s failed", subject)
            return Response.failure(
                AppError(
                    INTERNAL,
                    f"the handler of {subject} failed: {type(exc).__name__}: {exc}",
                    "This is a bug in the service, not in the request; see the server's log.",
                    {"subject": subject},
                ),
                exc,
            )
        return Response.ok(reply)


def framework_error(exc: BaseException) -> AppError | None:
    """The wire form of one of the framework's own errors, or None for any other exception.

    A handler that lets ``AggregateNotFoundError``, ``VersionNotFoundError``,
    ``ConcurrencyError`` or ``UniqueConstraintError`` escape is telling the
    caller something about the request (no such aggregate, a lost race, a
    taken value), not failing: the caller gets a code it can act on, the
    error's own message and what to do, with the error's facts as details.
    A ``UniqueConstraintReleaseError`` (releasing a value the aggregate does
    not own) is a bug of the service, so it stays ``INTERNAL``.
    """
    if isinstance(exc, AggregateNotFoundError):
        return AppError(
            NOT_FOUND,
            str(exc),
            "Check the aggregate id; send the command that creates the aggregate first.",
            {"aggregate_id": exc.aggregate_id, "aggregate_type": exc.aggregate_type},
        )
    if isinstance(exc, VersionNotFoundError):
        return AppError(
            NOT_FOUND,
            str(exc),
            f"Ask for a version from 1 to {exc.current}.",
            {
                "aggregate_id": exc.aggregate_id,
                "requested": str(exc.requested),
                "current": str(exc.current),
            },
        )
    if isinstance(exc, ConcurrencyError):
        return AppError(
            CONCURRENCY_CONFLICT,
            str(exc),
            "Send the request again with the same command id; it is applied once, on the "
            "aggregate's current state.",
            {
                "aggregate_id": exc.aggregate_id,
                "expected": str(exc.expected),
                "actual": str(exc.actual),
            },
        )
    if isinstance(exc, UniqueConstraintError) and not isinstance(exc, UniqueConstraintReleaseError):
        return AppError(
            UNIQUE_CONSTRAINT,
            str(exc),
            f"Choose another value for {exc.index}.",
            {"index": exc.index, "value": exc.value, "owner": exc.owner or ""},
        )
    return None


def _as_request(route: Route, message: Message) -> Message:
    expected = route.request_type.DESCRIPTOR.full_name
    actual = message.DESCRIPTOR.full_name if isinstance(message, Message) else type(message)
    if actual != expected:
        raise AppError(
            INVALID_MESSAGE_TYPE,
            f"{route.subject} expects {expected}, got {actual}",
            f"Send a request of type {expected}.",
            {"subject": route.subject, "expected": expected, "actual": str(actual)},
        )
    if not isinstance(message, route.request_type):
        # Same proto type from another generation run: pass the handler its own class.
        return route.request_type.FromString(message.SerializeToString())
    return message


def _invoker(route: Route) -> NextCall:
    async def invoke(message: Message, ctx: RequestContext) -> Message:
        reply = route.handler(message, ctx)
        if inspect.isawaitable(reply):
            reply = await reply
        expected = route.response_type.DESCRIPTOR.full_name
        if not isinstance(reply, Message) or reply.DESCRIPTOR.full_name != expected:
            got = reply.DESCRIPTOR.full_name if isinstance(reply, Message) else repr(reply)
            raise TypeError(
                f"the handler of {route.subject} returned {got}; it must return {expected}"
            )
        return reply

    return invoke


def _wrap(middleware: Middleware, call_next: NextCall) -> NextCall:
    async def call(message: Message, ctx: RequestContext) -> Message:
        return await middleware(message, ctx, call_next)

    return call


class InProcessTransport:
    """A transport whose services run in this process (notebooks, tests, one-process apps).

    Messages are passed as objects, not bytes; everything else (type checks,
    middlewares, error replies) is what a remote transport's server does.
    """

    def __init__(
        self, *bindings: ServiceBinding | Route, middlewares: Iterable[Middleware] = ()
    ) -> None:
        self.router = Router(middlewares)
        for binding in bindings:
            self.router.register(binding)

    def register(self, binding: ServiceBinding | Route) -> InProcessTransport:
        self.router.register(binding)
        return self

    def use(self, middleware: Middleware) -> InProcessTransport:
        self.router.use(middleware)
        return self

    async def request(
        self, subject: str, message: Message, headers: Mapping[str, str] | None = None
    ) -> Response:
        return await self.router.dispatch(subject, message, headers)
