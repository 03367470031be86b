"""``ConnectApp``: the generated services over HTTP with the Connect protocol (ASGI).

Built on ``connectrpc`` 0.13 by subclassing its abstract
``ConnectASGIApplication`` with endpoints made from the routes' descriptors,
so services known only at runtime (``%%es_generate`` modules) are served like
checked-in ones. What the runtime does by default and this app changes:
unknown JSON fields and JSON bodies that are not an object are refused
(``invalid_argument``), and gRPC and gRPC-Web requests are refused with HTTP
415 (only Connect is served; the security table in the README lists both).

Every request refused before the ``Router``'s chain (no or bad credentials, a
forbidden tenant, and what the runtime refuses before calling an endpoint:
an unknown path, a wrong HTTP method or content type, a body too large or
that does not parse) goes through the chain's observing middlewares
(``Router.refuse``), so the logging and OpenTelemetry middlewares record it.
"""

from __future__ import annotations

import base64
import contextvars
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from connectrpc._server_shared import EndpointUnary
from connectrpc.code import Code
from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext as ConnectContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf.message import Message
from protobuf.wkt import Any as AnyPy

from ..core.errors import AppError, AuthenticationError
from ..core.headers import (
    COMMAND_ID_HEADER,
    CORRELATION_ID_HEADER,
    CUSTOM_METADATA_PREFIX,
    TENANT_ID_HEADER,
)
from ..core.identity import Authenticator, Principal, is_identity_header
from ..core.middleware import default_middlewares
from ..core.responses import (
    INTERNAL,
    INVALID_REQUEST,
    NO_HANDLER,
    REQUEST_TOO_LARGE,
    TIMEOUT,
    Response,
    error_code,
)
from ..core.routing import DEFAULT_HANDLER_THREADS, Middleware, Route, Router, ServiceBinding

log = logging.getLogger("eventstore.rpc")

#: Default limit of a request body (bytes): larger ones get HTTP 429 ``resource_exhausted``.
DEFAULT_MAX_BODY_BYTES = 1 << 20
APP_ERROR_TYPE = "eventsourcing.AppError"

_CANONICAL = {h.lower(): h for h in (COMMAND_ID_HEADER, CORRELATION_ID_HEADER, TENANT_ID_HEADER)}
_REFUSED_CONTENT = ("application/grpc",)  # application/grpc, +proto, -web, -web+proto ...


#: Well-known types whose proto3 JSON form is not an object (a string, number, array ...).
_JSON_NOT_AN_OBJECT = frozenset(
    f"google.protobuf.{name}"
    for name in (
        *("Value", "ListValue", "Timestamp", "Duration", "FieldMask"),
        *("DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value"),
        *("UInt32Value", "BoolValue", "StringValue", "BytesValue"),
    )
)


class _JSONObjectCodec:
    """The proto3 JSON codec (unknown fields refused) that also refuses a body that is no object.

    ``json_format.Parse`` iterates over whatever JSON it is given, so ``[]``
    became an empty message that reached the handler and ``"ab"`` was read as
    fields ``a`` and ``b``. A message's proto3 JSON form is an object; the
    well-known types with another form (``_JSON_NOT_AN_OBJECT``) are left to
    the parser. Only a body that does not start with ``{`` is parsed a second
    time, to name what it is.
    """

    def __init__(self) -> None:
        self._json: Codec[Any, Any] = google_protobuf_json_codec(ignore_unknown_fields=False)

    def name(self) -> str:
        return self._json.name()

    def encode(self, message: Any) -> bytes:
        return self._json.encode(message)

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        expected = message_class.DESCRIPTOR.full_name
        is_object = data.lstrip(b" \t\r\n").startswith(b"{")
        if not is_object and expected not in _JSON_NOT_AN_OBJECT:
            kind = _json_kind(data)
            if kind is not None:
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"the request body is a JSON {kind}, but it must be a JSON object: the "
                    f"proto3 JSON form of {expected} (send {{}} for a message with no fields set)",
                )
        return self._json.decode(data, message_class)


def _json_kind(data: bytes | bytearray) -> str | None:
    """What JSON value ``data`` holds when it is valid JSON but no object; else None."""
    try:
        value = json.loads(data)
    except ValueError:
        return None  # not JSON: the parser's own error says where
    kinds = ((bool, "boolean"), (list, "array"), (str, "string"), ((int, float), "number"))
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return "null" if value is None else None


class _Exchange:
    """One HTTP request as ``ConnectApp`` watches it: did it reach an endpoint, what status
    and error body went back (a refusal of the runtime is known only by its response)."""

    __slots__ = ("_send", "body", "reached", "status")

    def __init__(self, send: Callable[[Any], Awaitable[None]]) -> None:
        self._send = send
        self.reached = False
        self.status: int | None = None
        self.body = b""

    async def send(self, message: Any) -> None:
        if message.get("type") == "http.response.start":
            self.status = int(message.get("status", 0))
        elif message.get("type") == "http.response.body" and self.status != 200:
            room = _ERROR_BODY_LIMIT - len(self.body)
            self.body += bytes(message.get("body", b""))[: max(room, 0)]
        await self._send(message)


#: The request being answered, so an endpoint can mark it reached.
_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "eventstore_rpc_exchange", default=None
)
#: Bytes of an error body read to find its Connect code (``{"code": ..., "message": ...}``).
_ERROR_BODY_LIMIT = 4096
#: Characters of a path kept in a refused request's subject (a path is the client's).
_SUBJECT_LIMIT = 200

#: What a refusal of the runtime is recorded as: by Connect code, then by HTTP status.
_BY_CONNECT_CODE = {
    "resource_exhausted": REQUEST_TOO_LARGE,
    "deadline_exceeded": TIMEOUT,
    "canceled": "CANCELLED",  # logging_middleware's outcome for a cancelled request
    "internal": INTERNAL,
    "unknown": INTERNAL,
    "data_loss": INTERNAL,
}
_BY_STATUS = {404: NO_HANDLER}


class _Application(ConnectASGIApplication[object]):
    @property
    def path(self) -> str:
        return "/"


def request_headers(raw: Iterable[tuple[str, str]]) -> dict[str, str]:
    """HTTP headers as the ``Router`` reads them: ``Es-*`` names in their canonical case."""
    out: dict[str, str] = {}
    meta = CUSTOM_METADATA_PREFIX.lower()
    for name, value in raw:
        lowered = name.lower()
        if lowered in _CANONICAL:
            out[_CANONICAL[lowered]] = value
        elif lowered.startswith(meta):
            out[CUSTOM_METADATA_PREFIX + name[len(meta) :]] = value
        else:
            out[lowered] = value
    return out


class ConnectApp:
    """An ASGI app serving ``bindings`` with the Connect protocol through one ``Router``.

    ``authenticate(headers) -> Principal | None`` proves who calls; ``None``
    (no credentials) is ``UNAUTHENTICATED`` unless ``allow_anonymous``.
    Incoming ``Es-Principal-*`` and ``Es-Tenant-*`` headers never reach the
    router as headers; ``Es-Tenant-Id`` is the tenant the request asks to act
    for, checked against the principal's tenants (``TENANT_FORBIDDEN``).
    ``middlewares`` default to ``default_middlewares(network=True)``.
    Errors map through the core's error table (``ERROR_CODES``): the Connect
    code of the row, with the ``eventsourcing.AppError`` (code, message,
    solution, details) in the error's details.
    """

    def __init__(
        self,
        *bindings: ServiceBinding | Route,
        middlewares: Iterable[Middleware] | None = None,
        authenticate: Authenticator | None = None,
        allow_anonymous: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        handler_threads: int = DEFAULT_HANDLER_THREADS,
    ) -> None:
        if authenticate is None and not allow_anonymous:
            raise ValueError(
                "ConnectApp needs authenticate= (e.g. jwt_authenticator(...)) or "
                "allow_anonymous=True to serve callers without credentials"
            )
        chain = (
            default_middlewares(network=True, anonymous=allow_anonymous)
            if middlewares is None
            else middlewares
        )
        self.router = Router(chain, handler_threads=handler_threads, network=True)
        for binding in bindings:
            self.router.register(binding)
        self.authenticate = authenticate
        self.allow_anonymous = allow_anonymous
        self.max_body_bytes = max_body_bytes
        endpoints = {self._path(s): self._endpoint(s) for s in self.router.subjects}
        self.paths = sorted(endpoints)
        self._app = _Application(
            service=self,
            endpoints=lambda _service: endpoints,
            read_max_bytes=max_body_bytes,
            codecs=[google_protobuf_binary_codec(), _JSONObjectCodec()],
        )

    @staticmethod
    def _path(subject: str) -> str:
        service, _, method = subject.rpartition(".")
        return f"/{service}/{method}"

    def _endpoint(self, subject: str) -> EndpointUnary[Any, Any]:
        route = self.router.route(subject)
        assert route is not None
        service, _, method = subject.rpartition(".")
        info: MethodInfo[Any, Any] = MethodInfo(
            name=method,
            service_name=service,
            input=route.request_type,
            output=route.response_type,
            idempotency_level=IdempotencyLevel.UNKNOWN,
            stream_type=StreamType.UNARY,
        )

        async def call(message: Message, ctx: ConnectContext[Any, Any]) -> Message:
            return await self._call(subject, route, message, ctx)

        return Endpoint.unary(info, call)

    async def _call(
        self, subject: str, route: Route, message: Message, ctx: ConnectContext[Any, Any]
    ) -> Message:
        exchange = _EXCHANGE.get()
        if exchange is not None:
            exchange.reached = True  # from here on, the router records the request
        headers = request_headers(ctx.request_headers.allitems())
        tenant = headers.pop(TENANT_ID_HEADER, "") or None
        headers = {k: v for k, v in headers.items() if not is_identity_header(k)}
        try:
            principal = await self._principal(headers)
        except AppError as error:
            refused = await self.router.refuse(
                subject, error, headers, message=message, tenant=tenant
            )
            raise connect_error(refused.error or error) from None
        reply = await self.router.dispatch(
            subject, message, headers, principal=principal, tenant=tenant
        )
        if not reply.success:
            raise connect_error(reply.error or AppError("INTERNAL", "the request failed"))
        return reply.unwrap(route.response_type)

    async def _principal(self, headers: Mapping[str, str]) -> Principal | None:
        principal: Principal | None = None
        if self.authenticate is not None:
            found = self.authenticate(headers)
            principal = await found if inspect.isawaitable(found) else found
        if principal is None and not self.allow_anonymous:
            raise AuthenticationError("no credentials were sent")
        return principal

    async def __call__(
        self,
        scope: Mapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope.get("type") != "http":
            await self._app(scope, receive, send)  # type: ignore[arg-type]
            return
        exchange = _Exchange(send)
        token = _EXCHANGE.set(exchange)
        try:
            if _is_grpc(scope):
                await _refuse(exchange.send, 415, b"only the Connect protocol is served here")
            else:
                await self._app(scope, receive, exchange.send)  # type: ignore[arg-type]
        finally:
            _EXCHANGE.reset(token)
        if not exchange.reached and exchange.status is not None and exchange.status >= 400:
            await self._record_refusal(scope, exchange)

    async def _record_refusal(self, scope: Mapping[str, Any], exchange: _Exchange) -> None:
        """Run the chain's observers around a refusal no endpoint saw (the response is sent)."""
        subject = _subject_of(scope)
        try:
            raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]
            headers = request_headers(raw)
            tenant = headers.pop(TENANT_ID_HEADER, "") or None
            error = _runtime_refusal(scope, subject, exchange)
            await self.router.refuse(subject, error, headers, tenant=tenant)
        except Exception:  # the reply is gone already; a failure here must not reach the server
            log.exception("recording the refused request to %s failed", subject)


def _is_grpc(scope: Mapping[str, Any]) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"application/grpc")
        for name, value in scope.get("headers", ())
    )


def _subject_of(scope: Mapping[str, Any]) -> str:
    """The subject of a request's path (``/pkg.Service/Method`` -> ``pkg.Service.Method``),
    cut to ``_SUBJECT_LIMIT`` characters, anything unprintable as ``?`` (it is the client's)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    service, _, method = path.lstrip("/").rpartition("/")
    subject = f"{service}.{method}" if service else method
    subject = "".join(c if c.isprintable() else "?" for c in subject[:_SUBJECT_LIMIT])
    return subject or "/"


def _runtime_refusal(scope: Mapping[str, Any], subject: str, exchange: _Exchange) -> AppError:
    """The ``AppError`` a refusal sent by the runtime (or the gRPC check) is recorded as."""
    status = exchange.status or 0
    connect_code, message = "", ""
    try:
        body = json.loads(exchange.body) if exchange.body else {}
        if isinstance(body, dict):
            connect_code, message = str(body.get("code", "")), str(body.get("message", ""))
    except ValueError:
        pass
    code = _BY_CONNECT_CODE.get(connect_code) or _BY_STATUS.get(status) or INVALID_REQUEST
    if not message:
        method = scope.get("method", "")
        message = {
            404: f"no method is served at {scope.get('path', '')!r}",
            405: f"HTTP {method} is not served here (Connect unary calls are POST)",
            415: "the request's content type is not served here",
        }.get(status, f"the request was refused with HTTP {status}")
    return AppError(
        code,
        message,
        "Send a Connect unary request (POST, application/json or application/proto) to "
        "/<package>.<Service>/<Method>.",
        {"subject": subject, "http_status": str(status)},
    )


async def _refuse(send: Callable[[Any], Awaitable[None]], status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"accept-post", b"application/json, application/proto"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def connect_error(error: AppError) -> ConnectError:
    """The Connect error of an ``AppError``: the code of its row, the AppError in the details."""
    wire = Response.failure(error).to_proto().error
    detail = AnyPy(type_url=f"type.googleapis.com/{APP_ERROR_TYPE}", value=wire.SerializeToString())
    return ConnectError(Code(error_code(error.code).connect_code), error.message, [detail])


def app_error_from_details(details: Iterable[Mapping[str, Any]]) -> AppError | None:
    """The ``AppError`` carried in a Connect JSON error's ``details`` (None when absent)."""
    from ..proto.eventsourcing import response_pb2

    for detail in details:
        if detail.get("type") == APP_ERROR_TYPE:
            raw = base64.b64decode(detail.get("value", "") + "==")
            e = response_pb2.AppError.FromString(raw)
            return AppError(e.code, e.message, e.solution, dict(e.details))
    return None


def serve_http(app: ConnectApp, host: str = "127.0.0.1", port: int = 8080) -> Any:
    """A ``uvicorn.Server`` for ``app`` (call ``await server.serve()``; set
    ``server.should_exit = True`` to stop it)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    return uvicorn.Server(config)


__all__ = [
    "APP_ERROR_TYPE",
    "DEFAULT_MAX_BODY_BYTES",
    "ConnectApp",
    "app_error_from_details",
    "connect_error",
    "request_headers",
    "serve_http",
]
