"""The server side every transport shares: routes, the middleware chain, errors as replies.

A ``Router`` finds the ``Route`` of a subject, checks the request's type,
runs the middlewares around the handler and turns whatever the handler
raised into an error reply. The in-process transport and the NATS and HTTP
servers all dispatch through one, so a service behaves the same on every
path (DESIGN decision 10).

A request refused before the chain runs (no handler, a forbidden tenant, a
message of another type; on a host: bad credentials, bytes that are no
request) still passes through the chain's observing middlewares, those marked
with ``observes_refusals`` (logging, OpenTelemetry): ``Router.refuse`` runs
them around the refusal, so it is logged and traced like any other request,
and nothing else runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from .errors import AppError, InvalidTenantError, TenantForbiddenError
from .events import EventMetadata
from .headers import (
    COMMAND_ID_HEADER,
    CORRELATION_ID_HEADER,
    CUSTOM_METADATA_PREFIX,
)
from .identity import Principal, without_identity_headers
from .ids import new_command_id
from .responses import (
    INTERNAL,
    INVALID_MESSAGE_TYPE,
    INVALID_TENANT,
    NO_HANDLER,
    Response,
    app_error_for,
)
from .tenancy import check_tenant_id, current_tenant, with_tenant

log = logging.getLogger("eventstore.transport")

DEFAULT_HANDLER_THREADS = 8
"""Threads for synchronous handlers per router: a slow one then holds up only its own
thread. Above it, further synchronous calls wait in the pool's queue (first in, first
out); ``async`` handlers never wait for it."""

# Every router, for a forked child to forget its parent's handler threads.
_routers: weakref.WeakSet[Router] = weakref.WeakSet()


def _forget_pools_in_child() -> None:
    """In a forked child: the parent's handler threads do not exist there. The inherited
    pool believes it has idle threads and would never start one, so a synchronous handler
    would never run; each router makes a pool of its own on its next synchronous call (as
    ``offloop._forget_pool`` does)."""
    for router in list(_routers):
        router._pool = None
        router._pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


@dataclass(slots=True)
class RequestContext:
    """What a handler (and each middleware) knows about the request beside its message.

    ``command_id`` is the client's id for this request: pass it to
    ``Repository.save_with_command`` so that a retry is applied once.
    ``values`` is where middlewares leave what they found.
    ``principal`` is who sent the request, as the host proved it (network
    hosts: their ``authenticate`` hook) or the in-process caller passed it;
    ``tenant`` the tenant the request acts for, checked against the
    principal's tenants. Neither is ever read from a header the client sent.
    ``network`` is True on a network host (NATS, HTTP).
    ``refused`` is True when the request was refused before the chain: only the
    observing middlewares (``observes_refusals``) see it, and what they call
    next raises the refusal. ``tenant`` is then the tenant the request asked
    for when it is a well-formed id (a forbidden one included), and
    ``principal`` whoever the host proved, if it got that far.
    """

    subject: str
    command_id: str
    headers: Mapping[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    principal: Principal | None = None
    tenant: str = ""
    network: bool = False
    refused: bool = False

    @property
    def metadata(self) -> EventMetadata:
        """Event metadata for the events this request causes (causation: the command id).

        ``principal_id`` and ``tenant_id`` come from ``principal`` and ``tenant``,
        never from headers (a client could claim anything there).
        """
        h = self.headers
        prefix = CUSTOM_METADATA_PREFIX
        return EventMetadata(
            causation_id=self.command_id,
            correlation_id=h.get(CORRELATION_ID_HEADER, "") or self.command_id,
            principal_id=self.principal.id if self.principal is not None else "",
            tenant_id=self.tenant,
            custom={k[len(prefix) :]: v for k, v in h.items() if k.startswith(prefix)},
        )


Handler = Callable[[Message, RequestContext], "Message | Awaitable[Message]"]
"""A service method: plain or ``async``, raising ``AppError`` for business errors."""

NextCall = Callable[[Message, RequestContext], Awaitable[Message]]
"""The rest of the chain, as a middleware sees it."""

Middleware = Callable[[Message, RequestContext, NextCall], Awaitable[Message]]
"""``async def mw(message, ctx, call_next) -> reply``: wraps every handler call.

A middleware may inspect or change the context (a changed ``ctx.tenant`` is
checked against the principal's tenants and the handler runs in it), reject the
request by raising ``AppError``, or call ``await call_next(message, ctx)`` and
look at the reply.
"""

M = TypeVar("M", bound=Middleware)

OBSERVES_REFUSALS = "observes_refusals"
"""The attribute ``observes_refusals`` sets on a middleware."""


def observes_refusals(middleware: M) -> M:
    """Mark ``middleware`` as an observer: it also sees the requests refused before the chain.

    An observer only records (a log record, a span, a metric): for a refused
    request it is called with ``ctx.refused`` set, and its ``call_next`` raises
    the refusal's ``AppError``, which it must let through (a refusal stays a
    refusal whatever an observer returns). ``logging_middleware`` and
    ``otel_middleware`` are observers; no other middleware runs for a refused
    request, and neither does the handler.
    """
    setattr(middleware, OBSERVES_REFUSALS, True)
    return middleware


def is_observer(middleware: Middleware) -> bool:
    """Whether ``middleware`` was marked with ``observes_refusals``."""
    return getattr(middleware, OBSERVES_REFUSALS, False) is True


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
    own errors by ``app_error_for``, anything else ``INTERNAL``.

    Handlers: an ``async def`` handler runs on the event loop (use the
    repository's ``*_async`` methods in it, so the loop never waits on the
    store). A plain ``def`` handler runs off the loop, on one of
    ``handler_threads`` threads (``DEFAULT_HANDLER_THREADS``) with the caller's
    context variables (tenant, principal, trace context) copied in; when all
    are busy, further synchronous calls wait in that pool's queue in arrival
    order, and ``async`` handlers carry on. A synchronous handler therefore has
    no running event loop: it must not call ``asyncio.get_running_loop()``.
    ``handler_threads=0`` runs synchronous handlers on the loop (they then
    block it while they run). For throughput on few cores prefer ``async``
    handlers (docs/decisions.md, "Handlers off the loop").
    """

    def __init__(
        self,
        middlewares: Iterable[Middleware] = (),
        *,
        handler_threads: int = DEFAULT_HANDLER_THREADS,
        network: bool = False,
    ) -> None:
        if isinstance(handler_threads, bool) or not isinstance(handler_threads, int):
            raise TypeError(f"handler_threads must be an int, got {handler_threads!r}")
        if handler_threads < 0:
            raise ValueError(
                f"handler_threads must be 0 (synchronous handlers on the loop) or more, "
                f"got {handler_threads}"
            )
        self._routes: dict[str, Route] = {}
        self._middlewares: list[Middleware] = list(middlewares)
        self.handler_threads = handler_threads
        self.network = network
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        _routers.add(self)

    def _handler_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.handler_threads, thread_name_prefix="eventstore-handler"
                )
            return self._pool

    def close(self) -> None:
        """Let the handler threads end once their calls finish (a later call starts new ones)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

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
        self,
        subject: str,
        message: Message,
        headers: Mapping[str, str] | None = None,
        *,
        principal: Principal | None = None,
        tenant: str | None = None,
    ) -> Response:
        """Run the chain for one request and return its reply (errors as replies).

        ``principal`` is the caller as the host proved it; ``tenant`` the tenant
        the request asks to act for (a network host takes it from the
        ``Es-Tenant-Id`` header). Incoming ``Es-Principal-*`` and ``Es-Tenant-*``
        headers are dropped here. A principal asking for a tenant it does not
        belong to gets ``TENANT_FORBIDDEN`` (on a network host, so does a caller
        without a principal that names a tenant); a principal of exactly one tenant
        that asks for none acts in that one. The chain runs inside
        ``with_tenant(tenant)``.
        """
        headers = without_identity_headers(headers or {})
        route = self._routes.get(subject)
        if route is None:
            known = ", ".join(self.subjects) or "none"
            refusal = AppError(
                NO_HANDLER,
                f"no handler is registered for subject {subject!r} (registered: {known})",
                "Register the service's server binding with the transport.",
                {"subject": subject},
            )
            return await self.refuse(
                subject, refusal, headers, message=message, principal=principal, tenant=tenant
            )
        ctx = RequestContext(
            subject,
            headers.get(COMMAND_ID_HEADER) or new_command_id(),
            headers,
            principal=principal,
            network=self.network,
        )
        try:
            try:
                ctx.tenant = _resolve_tenant(principal, tenant, self.network)
                request = _as_request(route, message)
            except AppError as refusal:
                ctx.tenant = _asked_tenant(principal, tenant, self.network)
                return await self._observed_refusal(message, ctx, refusal)
            call: NextCall = _invoker(route, self)
            for middleware in reversed(self._middlewares):
                call = _wrap(middleware, call)
            with with_tenant(ctx.tenant):
                reply = await call(request, ctx)
            _check_reply(route, reply, "the middleware chain")
        except AppError as error:
            return Response.failure(error)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # this request is being cancelled (a deadline, a client gone)
            # Raised by the handler or a middleware itself: a failure, answered as one.
            return self._failure(subject, ctx, exc)
        except Exception as exc:
            return self._failure(subject, ctx, exc)
        return Response.ok(reply)

    def _failure(self, subject: str, ctx: RequestContext, exc: BaseException) -> Response:
        mapped = app_error_for(exc, ctx.command_id)
        if mapped is not None:
            log.info("handler of %s refused the request: %s", subject, mapped.code)
            return Response.failure(mapped, exc)
        if self.network:
            return Response.failure(internal_error(subject, exc), exc)
        where = "the handler" if getattr(exc, _RAISED_BY_HANDLER, False) else "a middleware"
        log.exception("%s of %s failed", where, subject, exc_info=exc)
        return Response.failure(
            AppError(
                INTERNAL,
                f"{where} of {subject} failed: {type(exc).__name__}: {exc}",
                "This is a bug in the service, not in the request; see the server's log.",
                {"subject": subject},
            ),
            exc,
        )

    @property
    def observers(self) -> list[Middleware]:
        """The chain's observing middlewares (``observes_refusals``), outermost first."""
        return [m for m in self._middlewares if is_observer(m)]

    async def refuse(
        self,
        subject: str,
        error: AppError,
        headers: Mapping[str, str] | None = None,
        *,
        message: Message | None = None,
        principal: Principal | None = None,
        tenant: str | None = None,
    ) -> Response:
        """The reply to a request a host refused before the chain: ``error``, observed.

        The chain's observers (``observes_refusals``: logging, OpenTelemetry) run
        around the refusal, so it leaves the same log record and span as a request
        the chain refused; no other middleware runs, nor the handler. ``message``
        is the request when it was read (else an empty message), ``principal``
        the caller when it was proven, ``tenant`` the tenant it asked for. The
        reply is ``error`` whatever an observer does.
        """
        headers = without_identity_headers(headers or {})
        ctx = RequestContext(
            subject,
            headers.get(COMMAND_ID_HEADER) or new_command_id(),
            headers,
            principal=principal,
            tenant=_asked_tenant(principal, tenant, self.network),
            network=self.network,
        )
        return await self._observed_refusal(message, ctx, error)

    async def _observed_refusal(
        self, message: Message | None, ctx: RequestContext, error: AppError
    ) -> Response:
        ctx.refused = True

        async def refused(_message: Message, _ctx: RequestContext) -> Message:
            raise error

        call: NextCall = refused
        for middleware in reversed(self.observers):
            call = _wrap(middleware, call)
        request = message if isinstance(message, Message) else empty_pb2.Empty()
        try:
            await call(request, ctx)
        except AppError:
            pass  # the refusal, as the observers let it through
        except Exception:
            log.exception("an observing middleware failed on a refused request to %s", ctx.subject)
        return Response.failure(error)


def internal_error(subject: str, exc: BaseException) -> AppError:
    """A generic ``INTERNAL`` reply for a caller outside the process, with an error id.

    The exception's text (file names, SQL, values) stays in the server's log,
    under the same error id, so an operator can find it from the reply.
    """
    error_id = uuid.uuid4().hex[:16]
    log.error(
        "handler of %s failed (error id %s)",
        subject,
        error_id,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"error_id": error_id, "subject": subject},
    )
    return AppError(
        INTERNAL,
        f"the service failed to handle {subject} (error id {error_id})",
        "This is a bug in the service, not in the request; quote the error id to its operators.",
        {"subject": subject, "error_id": error_id},
    )


def _resolve_tenant(principal: Principal | None, requested: str | None, network: bool) -> str:
    if requested:
        check_tenant_id(requested)
        if principal is None and network:
            # An anonymous caller of a network host belongs to no tenant.
            raise TenantForbiddenError("(anonymous)", requested)
        if principal is not None and requested not in principal.tenants:
            raise TenantForbiddenError(principal.id, requested)
        return requested
    if principal is not None and len(principal.tenants) == 1:
        only = principal.tenants[0]
        try:
            return check_tenant_id(only)
        except InvalidTenantError:
            # The server's fault (its token or authenticator), not the client's.
            raise AppError(
                INVALID_TENANT,
                f"principal {principal.id!r} belongs to tenant {str(only)[:80]!r}, which is not "
                "a valid tenant id, and the request named none",
                "The service's authenticator (or the token's tenants claim) must give tenant "
                "ids matching ^[a-z0-9][a-z0-9_-]{0,63}$; until then, send Es-Tenant-Id.",
                {"tenant_id": str(only)[:80]},
            ) from None
    return ""


def _asked_tenant(principal: Principal | None, requested: str | None, network: bool) -> str:
    """The tenant a refused request is recorded under: the one it acts for, else the one it
    asked for when that is a well-formed id (a forbidden one), else none."""
    try:
        return _resolve_tenant(principal, requested, network)
    except TenantForbiddenError:
        return requested or ""
    except AppError:
        return ""  # not a tenant id: what the client sent stays out of the records


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


def _is_async(handler: Handler) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _invoker(route: Route, router: Router) -> NextCall:
    on_loop = router.handler_threads == 0 or _is_async(route.handler)

    async def invoke(message: Message, ctx: RequestContext) -> Message:
        if ctx.tenant != current_tenant():
            # A middleware changed the tenant (its own lookup): the handler acts in that one,
            # checked as the request's would be, so metadata and storage never part.
            ctx.tenant = _resolve_tenant(ctx.principal, ctx.tenant, router.network)
            with with_tenant(ctx.tenant):
                return await invoke_here(message, ctx)
        return await invoke_here(message, ctx)

    async def invoke_here(message: Message, ctx: RequestContext) -> Message:
        try:
            if on_loop:
                reply = route.handler(message, ctx)
            else:
                context = contextvars.copy_context()
                try:
                    reply = await asyncio.get_running_loop().run_in_executor(
                        router._handler_pool(), context.run, route.handler, message, ctx
                    )
                except (SystemExit, KeyboardInterrupt) as exc:
                    # Raised on a worker thread: it must not stop the host's event loop.
                    raise RuntimeError(
                        f"the handler of {route.subject} raised {type(exc).__name__}"
                        f"({exc}) on a handler thread"
                    ) from exc
            if inspect.isawaitable(reply):
                reply = await reply
            _check_reply(route, reply, "the handler")
        except (Exception, asyncio.CancelledError) as exc:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _RAISED_BY_HANDLER, True)
            raise
        return reply

    return invoke


#: Set on an exception the handler raised (not a middleware): the reply says which failed.
_RAISED_BY_HANDLER = "_eventstore_raised_by_handler"


def _check_reply(route: Route, reply: object, by: str) -> None:
    """Refuse a reply of another type: a middleware that forgot ``return`` gave None, which
    would reach the caller as an empty reply marked as a success."""
    expected = route.response_type.DESCRIPTOR.full_name
    if not isinstance(reply, Message) or reply.DESCRIPTOR.full_name != expected:
        got = reply.DESCRIPTOR.full_name if isinstance(reply, Message) else repr(reply)
        hint = (
            ""
            if by == "the handler"
            else " (does a middleware lack `return await call_next(...)`?)"
        )
        raise TypeError(f"{by} of {route.subject} returned {got}; it must return {expected}{hint}")


def _wrap(middleware: Middleware, call_next: NextCall) -> NextCall:
    async def call(message: Message, ctx: RequestContext) -> Message:
        result = middleware(message, ctx, call_next)
        if not inspect.isawaitable(result):
            name = getattr(middleware, "__qualname__", repr(middleware))
            raise TypeError(
                f"middleware {name} returned {type(result).__name__}, not an awaitable: a "
                "middleware is `async def mw(message, ctx, call_next)` and returns "
                "`await call_next(message, ctx)`"
            )
        return await result

    return call


__all__ = [
    "DEFAULT_HANDLER_THREADS",
    "OBSERVES_REFUSALS",
    "Handler",
    "Middleware",
    "NextCall",
    "RequestContext",
    "Route",
    "Router",
    "ServiceBinding",
    "is_observer",
    "observes_refusals",
]
