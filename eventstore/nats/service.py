"""Serving generated service bindings over NATS request-reply (the NATS micro service API).

``NatsServiceHost(servers, AccountCommandServiceServer(h), ...)`` registers one
NATS micro service per proto service (``$SRV.PING/INFO/STATS`` answer for
free) with one endpoint per method on the method's subject
(``account.v1.AccountCommandService.Deposit``), so any NATS client can call
it: the request is the message's proto bytes, the reply an
``eventsourcing.Response``. Every request goes through the same ``Router`` as
in process, so middlewares, type checks and error replies are the same on
both paths (DESIGN decision 10).

What nats-py's micro API does not do, this does (toolchain-notes, "Verified
2026-12-01"):

- an endpoint's callback is awaited before the next message is taken, so each
  request is answered in its own task, at most ``max_in_flight`` at a time per
  host (beyond that the subscriptions wait: back-pressure, not an unbounded
  pile of tasks);
- an exception escaping a callback is replied with its ``repr``: every failure
  is caught here and replied with a code of ``ERROR_CODES``; an ``INTERNAL``
  reply never carries the exception's text (it is logged);
- the default queue group ``q`` is shared by every micro service: endpoints
  join ``eventstore`` instead;
- a catch-all endpoint per service (``<service>.>``) answers a method the
  service does not have with ``NO_HANDLER``. It shares the queue group with
  the method endpoints, so NATS may hand it a request for a known method too:
  it serves it through the same router (only the per-endpoint stats differ).

Identity (docs/service-edge.md): incoming ``Es-Principal-*`` and
``Es-Tenant-*`` headers are dropped; the host's ``authenticate(headers)``
hook proves the principal (``None`` is ``UNAUTHENTICATED`` unless
``allow_anonymous=True``), and ``Es-Tenant-Id`` is the tenant the request
asks to act for, checked against the principal's tenants. An ``INTERNAL``
reply is generic, with an error id that is also logged. A request refused
before the chain (no such method, bytes that are no request, no or bad
credentials, a forbidden tenant) is still logged and traced: the router's
``refuse`` runs the chain's observing middlewares around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message
from nats.aio.client import Client
from nats.errors import MaxPayloadError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from ..core.errors import AppError, AuthenticationError
from ..core.headers import (
    COMMAND_ID_HEADER,
    MESSAGE_TYPE_HEADER,
    METADATA_HEADER,
    PRINCIPAL_ID_HEADER,
    TENANT_ID_HEADER,
    unpack_custom_metadata,
)
from ..core.identity import Authenticator, Principal, is_identity_header
from ..core.ids import new_command_id
from ..core.middleware import default_middlewares
from ..core.responses import (
    INTERNAL,
    INVALID_MESSAGE_TYPE,
    INVALID_REQUEST,
    NO_HANDLER,
    REPLY_TOO_LARGE,
    Response,
    error_code,
)
from ..core.routing import Middleware, Route, Router, ServiceBinding, internal_error
from .connection import NatsOptions, close_quietly

log = logging.getLogger("eventstore.nats.service")

#: The queue group every endpoint joins (micro's default ``q`` is shared by all services).
QUEUE_GROUP = "eventstore"
#: Requests answered at once per host before the subscriptions wait.
DEFAULT_MAX_IN_FLIGHT = 64
#: Headers a NATS caller may not set (the host authenticates; ``is_identity_header``
#: drops every ``Es-Principal-*`` and ``Es-Tenant-*`` header, these included).
UNTRUSTED_HEADERS = frozenset({PRINCIPAL_ID_HEADER, TENANT_ID_HEADER})
ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"

_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


async def connect_bounded(options: NatsOptions) -> Client:
    """A connected client; ``NatsOptions.connect`` fails fast (an ``OSError``) when no
    server answers or the credentials are refused, instead of retrying for ever."""
    return await options.connect(error_cb=_log_error)


async def _log_error(error: Exception) -> None:
    # nats-py's default logs every failed attempt with a traceback.
    log.warning("NATS connection: %s: %s", type(error).__name__, error)


def micro_service_name(service: str) -> str:
    """The NATS micro name of a proto service (``account.v1.X`` -> ``account_v1_X``).

    Micro names allow only ``[A-Za-z0-9_-]``; every other character becomes ``_``.
    """
    return _NOT_A_NAME.sub("_", service)


class NatsServiceHost:
    """Serves service bindings over NATS until stopped; ``async with`` starts and stops it.

    ``servers`` is a NATS URL or a list of them; the keyword options
    (``user``/``password``, ``token``, ``nkeys_seed``, ``user_credentials``,
    ``tls_ca``, ``tls_cert``/``tls_key``) are ``NatsOptions``'. ``version`` is the micro services'
    semver version (shown by ``$SRV.INFO``).
    """

    def __init__(
        self,
        servers: str | Sequence[str],
        *bindings: ServiceBinding | Route,
        middlewares: Iterable[Middleware] | None = None,
        authenticate: Authenticator | None = None,
        allow_anonymous: bool = False,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        version: str = "1.0.0",
        queue_group: str = QUEUE_GROUP,
        stop_timeout: float = 10.0,
        **connect: Any,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if not _SEMVER.match(version):
            raise ValueError(
                f"version must be a semantic version like 1.0.0 (NATS micro requires it), "
                f"got {version!r}"
            )
        if authenticate is None and not allow_anonymous:
            raise ValueError(
                "NatsServiceHost needs authenticate= (e.g. jwt_authenticator(...)) or "
                "allow_anonymous=True to serve callers without credentials"
            )
        self.options = NatsOptions.of(servers, **connect)
        self.authenticate = authenticate
        self.allow_anonymous = allow_anonymous
        chain = (
            default_middlewares(network=True, anonymous=allow_anonymous)
            if middlewares is None
            else middlewares
        )
        self.router = Router(chain, network=True)
        self.max_in_flight = max_in_flight
        self.version = version
        self.queue_group = queue_group
        self.stop_timeout = stop_timeout
        self._nc: Client | None = None
        self._services: list[Service] = []
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        for binding in bindings:
            self.register(binding)

    # -- configuring --------------------------------------------------------------------
    def register(self, binding: ServiceBinding | Route) -> NatsServiceHost:
        """Serve one more binding (before ``start``)."""
        if self._nc is not None:
            raise RuntimeError(
                "register every binding before the host starts: NATS endpoints are "
                "subscribed once, on start"
            )
        self.router.register(binding)
        return self

    def use(self, middleware: Middleware) -> NatsServiceHost:
        self.router.use(middleware)
        return self

    @property
    def services(self) -> dict[str, list[str]]:
        """Each served proto service and the subjects of its methods."""
        out: dict[str, list[str]] = {}
        for subject in self.router.subjects:
            out.setdefault(subject.rpartition(".")[0], []).append(subject)
        return out

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return len(self._tasks)

    @property
    def connection(self) -> Client:
        if self._nc is None:
            raise RuntimeError("the host is not started: use `async with` or await start()")
        return self._nc

    # -- running ------------------------------------------------------------------------
    async def start(self) -> NatsServiceHost:
        if self._nc is not None:
            return self
        if not self.router.subjects:
            raise ValueError(
                "the host has no service to serve: pass the generated <Service>Server bindings"
            )
        nc = await connect_bounded(self.options)
        self._nc = nc
        # Made on the loop that serves: a host may be started again under another loop.
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._stopped = asyncio.Event()
        try:
            for service, subjects in self.services.items():
                micro = await add_service(
                    nc,
                    name=micro_service_name(service),
                    version=self.version,
                    description=f"{service} (eventstore)",
                    metadata={"proto_service": service},
                    queue_group=self.queue_group,
                )
                self._services.append(micro)
                for subject in subjects:
                    await micro.add_endpoint(
                        name=subject.rpartition(".")[2],
                        subject=subject,
                        handler=self._on_request,
                        metadata={
                            "request_type": self._route(subject).request_type.DESCRIPTOR.full_name
                        },
                    )
                await micro.add_endpoint(
                    name="unknown_method", subject=f"{service}.>", handler=self._on_request
                )
            await nc.flush()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "serving %s over NATS (%s)", ", ".join(self.services), ", ".join(self.options.servers)
        )
        return self

    async def stop(self) -> None:
        """Stop taking requests, finish the ones in flight (up to ``stop_timeout``), disconnect."""
        nc, self._nc = self._nc, None
        if nc is None:
            return
        try:
            await self._stop_services(nc)
            if self._tasks:
                _, pending = await asyncio.wait(set(self._tasks), timeout=self.stop_timeout)
                for task in pending:
                    task.cancel()
            await close_quietly(nc, drain=self.stop_timeout)
        finally:
            # serve_forever returns whatever happened above: a stop must end the service.
            self._stopped.set()

    async def _stop_services(self, nc: Client) -> None:
        """Stop the micro services (they unsubscribe), for at most ``stop_timeout``.

        Each stop ends in a flush, and a flush on a connection whose server has just
        gone waits for a reply that never comes (10 s, then ``BrokenPipeError``): the
        wait ends as soon as the connection is seen down.
        """
        services, self._services = list(self._services), []
        if not services or not nc.is_connected:
            return
        stopping = asyncio.ensure_future(
            asyncio.gather(*(micro.stop() for micro in services), return_exceptions=True)
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout
        while not stopping.done() and nc.is_connected and loop.time() < deadline:
            await asyncio.wait({stopping}, timeout=0.05)
        if not stopping.done():
            log.debug("stopping the micro services did not finish; the connection is down")
            stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await stopping

    async def serve_forever(self) -> None:
        """Start if needed and wait until ``stop`` is called (from another task)."""
        await self.start()
        await self._stopped.wait()

    async def __aenter__(self) -> NatsServiceHost:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- answering ----------------------------------------------------------------------
    def _route(self, subject: str) -> Route:
        route = self.router.route(subject)
        assert route is not None
        return route

    async def _on_request(self, request: Request) -> None:
        # The micro endpoint awaits this before taking its next message: hand the
        # request to a task, waiting only while max_in_flight requests are in flight.
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._answer(request))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, request: Request) -> None:
        subject = request.subject
        headers = request.headers or {}
        command_id = headers.get(COMMAND_ID_HEADER) or new_command_id()
        try:
            response = await self.handle(subject, request.data, headers, command_id)
        except Exception:  # a bug here must still get a reply, and not its text
            log.exception("answering a request on %s failed", subject)
            failure = _internal(subject, command_id)
            try:
                trusted = {k: v for k, v in headers.items() if not is_identity_header(k)}
                trusted[COMMAND_ID_HEADER] = command_id
                response = await self.router.refuse(subject, failure, trusted)
            except Exception:
                log.exception("recording the failed request on %s failed", subject)
                response = Response.failure(failure)
        try:
            await self._reply(request, subject, command_id, response)
        except Exception:
            log.exception("the reply to a request on %s could not be sent", subject)

    async def handle(
        self, subject: str, data: bytes, headers: Mapping[str, str], command_id: str
    ) -> Response:
        """The reply to one request's bytes: parsed, routed, errors as the table's codes.

        A request refused here (no such method, another message type, bytes that
        are no request, no or bad credentials) never reaches the chain; the
        router's ``refuse`` still runs the chain's observers (logging,
        OpenTelemetry) around the refusal, so it is logged and traced.
        """
        tenant = next((v for k, v in headers.items() if k.lower() == "es-tenant-id"), "")
        trusted = {k: v for k, v in headers.items() if not is_identity_header(k)}
        trusted[COMMAND_ID_HEADER] = command_id
        try:
            trusted = unpack_custom_metadata(trusted)
        except ValueError as exc:
            trusted = {k: v for k, v in trusted.items() if k != METADATA_HEADER}
            refusal = AppError(
                INVALID_REQUEST,
                f"the {METADATA_HEADER} header of the request to {subject} is not "
                f"percent-encoded key=value pairs joined by '&': {exc}",
                "Send custom metadata as Es-Meta-<key> headers, or encode them with "
                "eventstore.core.headers.encode_metadata.",
                {"subject": subject, "header": METADATA_HEADER},
            )
            return await self.router.refuse(subject, refusal, trusted, tenant=tenant)
        route = self.router.route(subject)
        if route is None:
            service = next((s for s in self.services if subject.startswith(s + ".")), "")
            method = subject[len(service) + 1 :] if service else subject
            known = ", ".join(s.rpartition(".")[2] for s in self.services.get(service, []))
            refusal = AppError(
                NO_HANDLER,
                f"{service or subject} has no method {method!r} (its methods: {known or 'none'})",
                "Call one of its methods; regenerate the client if the proto changed.",
                {"subject": subject},
            )
            return await self.router.refuse(subject, refusal, trusted, tenant=tenant)
        expected = route.request_type.DESCRIPTOR.full_name
        claimed = headers.get(MESSAGE_TYPE_HEADER)
        if claimed and claimed != expected:
            refusal = AppError(
                INVALID_MESSAGE_TYPE,
                f"{subject} expects {expected}, got {claimed}",
                f"Send a request of type {expected}.",
                {"subject": subject, "expected": expected, "actual": claimed},
            )
            return await self.router.refuse(subject, refusal, trusted, tenant=tenant)
        try:
            message: Message = route.request_type.FromString(data)
        except Exception as exc:
            refusal = AppError(
                INVALID_REQUEST,
                f"the {len(data)} bytes sent to {subject} are not a {expected} message "
                f"({type(exc).__name__})",
                f"Send the serialized {expected} (message.SerializeToString()).",
                {"subject": subject, "expected": expected},
            )
            return await self.router.refuse(subject, refusal, trusted, tenant=tenant)
        try:
            principal = await self._principal(trusted)
        except AppError as error:
            return await self.router.refuse(subject, error, trusted, message=message, tenant=tenant)
        except Exception as exc:  # the hook failed: its text may hold secrets (log only)
            failure = internal_error(subject, exc)
            return await self.router.refuse(
                subject, failure, trusted, message=message, tenant=tenant
            )
        # A network router: an unexpected failure is replied as a generic INTERNAL
        # with an error id (logged with the traceback), never the exception's text.
        return await self.router.dispatch(
            subject, message, trusted, principal=principal, tenant=tenant or None
        )

    async def _principal(self, headers: Mapping[str, str]) -> Principal | None:
        principal: Principal | None = None
        if self.authenticate is not None:
            found = self.authenticate(headers)
            principal = await found if inspect.isawaitable(found) else found
        if principal is None and not self.allow_anonymous:
            raise AuthenticationError("no credentials were sent")
        return principal

    async def _reply(
        self, request: Request, subject: str, command_id: str, response: Response
    ) -> None:
        nc = self._nc
        data = response.to_proto().SerializeToString()
        headers = _reply_headers(response, command_id)
        limit = nc.max_payload if nc is not None else 0
        size = len(data) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 16
        if limit and size > limit:
            response = Response.failure(_too_large(subject, command_id, len(data), limit))
            data = response.to_proto().SerializeToString()
            headers = _reply_headers(response, command_id)
        try:
            await request.respond(data, headers=headers)
        except MaxPayloadError:
            response = Response.failure(_too_large(subject, command_id, len(data), limit))
            await request.respond(
                response.to_proto().SerializeToString(),
                headers=_reply_headers(response, command_id),
            )


def _reply_headers(response: Response, command_id: str) -> dict[str, str]:
    headers = {COMMAND_ID_HEADER: command_id}
    if response.error is not None:
        row = error_code(response.error.code)
        headers[ERROR_CODE_HEADER] = row.nats_code
        headers[ERROR_HEADER] = response.error.code
    return headers


def _internal(subject: str, command_id: str) -> AppError:
    return AppError(
        INTERNAL,
        f"the handler of {subject} failed",
        "This is a bug in the service, not in the request; the service's log has the error "
        f"(command id {command_id}).",
        {"subject": subject, "command_id": command_id},
    )


def _too_large(subject: str, command_id: str, size: int, limit: int) -> AppError:
    return AppError(
        REPLY_TOO_LARGE,
        f"the reply of {subject} is {size} bytes, over the NATS server's max_payload of "
        f"{limit}; the request was handled (a command was applied)",
        "Return less in one reply (page a query's results), or raise max_payload in the NATS "
        "server's configuration. A retry with the same command id gets the same reply.",
        {"subject": subject, "command_id": command_id, "size": str(size), "limit": str(limit)},
    )


__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "QUEUE_GROUP",
    "NatsServiceHost",
    "micro_service_name",
]
