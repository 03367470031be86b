"""``ConnectApp``: the generated services over HTTP with the Connect protocol (ASGI).

Built on ``connectrpc`` 0.13 by subclassing its abstract
``ConnectASGIApplication`` with endpoints made from the routes' descriptors,
so services known only at runtime (``%%es_generate`` modules) are served like
checked-in ones. What the runtime does by default and this app changes:
unknown JSON fields and JSON bodies that are not an object are refused
(``invalid_argument``), and gRPC and gRPC-Web requests are refused with HTTP
415 (only Connect is served; the security table in the README lists both).

Every request refused before the ``Router``'s chain (no or bad credentials, a
forbidden tenant, a request whose ``Es-Message-Type`` header names another
type than the path's, headers that cannot be read, and what the runtime
refuses before calling an endpoint: an unknown path, a wrong HTTP method or
content type, a body too large or that does not parse) goes through the
chain's observing middlewares (``Router.refuse``), so the logging and
OpenTelemetry middlewares record it. Each such reply is a Connect error whose
details carry the ``eventsourcing.AppError`` of the error table
(``NO_HANDLER``, ``REQUEST_TOO_LARGE``, ``INVALID_MESSAGE_TYPE``,
``INVALID_REQUEST``), like the replies of the chain; the runtime's HTTP
status is kept (404 for an unknown path, 429 for a body too large ...).

Headers (core/headers.py): ``Es-Message-Type`` names the request's proto type,
as over NATS; a request without it (curl, another Connect client) is read as
the path's type. Custom metadata arrives in ``Es-Metadata``
(percent-encoded pairs, the case of keys kept) or, from clients that do not
send that, as ``Es-Meta-<key>`` headers, whose keys HTTP has lowercased.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from connectrpc._protocol import ConnectWireError
from connectrpc._server_shared import EndpointUnary
from connectrpc.code import Code
from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext as ConnectContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from protobuf.wkt import Any as AnyPy

from ..core.errors import AppError, AuthenticationError
from ..core.headers import (
    COMMAND_ID_HEADER,
    CORRELATION_ID_HEADER,
    CUSTOM_METADATA_PREFIX,
    MESSAGE_TYPE_HEADER,
    METADATA_HEADER,
    TENANT_ID_HEADER,
    decode_metadata,
)
from ..core.identity import Authenticator, Principal, is_identity_header
from ..core.ids import new_command_id
from ..core.middleware import default_middlewares
from ..core.responses import (
    INTERNAL,
    INVALID_MESSAGE_TYPE,
    INVALID_REQUEST,
    NO_HANDLER,
    REQUEST_TOO_LARGE,
    TIMEOUT,
    Response,
    error_code,
)
from ..core.routing import (
    DEFAULT_HANDLER_THREADS,
    Middleware,
    Route,
    Router,
    ServiceBinding,
    internal_error,
)

log = logging.getLogger("eventstore.rpc")

#: Default limit of a request body (bytes): larger ones get HTTP 429 ``resource_exhausted``.
DEFAULT_MAX_BODY_BYTES = 1 << 20
APP_ERROR_TYPE = "eventsourcing.AppError"

_CANONICAL = {
    h.lower(): h
    for h in (COMMAND_ID_HEADER, CORRELATION_ID_HEADER, TENANT_ID_HEADER, MESSAGE_TYPE_HEADER)
}


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

    A ``bytes`` field's value must be base64 (standard or URL-safe alphabet,
    padded or not): the parser drops characters that are not, so ``"!!!"``
    became empty bytes that were stored. A body of a type with ``bytes``
    fields is read as JSON once more to check them (``_bytes_fields``).
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
        decoded = self._json.decode(data, message_class)
        if _has_bytes(message_class.DESCRIPTOR):  # the body parsed: it is JSON
            bad = _non_base64_field(json.loads(data), message_class.DESCRIPTOR, "")
            if bad is not None:
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"the bytes field {bad} is not base64 (proto3 JSON carries bytes as "
                    "base64, standard or URL-safe alphabet, padding optional)",
                )
        return decoded


_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*")
_BYTES_VALUE = "google.protobuf.BytesValue"
#: Types whose JSON form the walk does not follow (their fields are not JSON keys).
_NOT_WALKED = frozenset(("google.protobuf.Any", "google.protobuf.Struct", "google.protobuf.Value"))


@functools.lru_cache(maxsize=1024)
def _has_bytes(descriptor: Descriptor) -> bool:
    """Whether a message of ``descriptor`` can hold a ``bytes`` value anywhere in it."""
    seen: set[str] = set()

    def walk(d: Descriptor) -> bool:
        if d.full_name in seen or d.full_name in _NOT_WALKED:
            return False
        seen.add(d.full_name)
        if d.full_name == _BYTES_VALUE:
            return True
        for field in d.fields:
            if field.type == FieldDescriptor.TYPE_BYTES:
                return True
            if field.message_type is not None and walk(field.message_type):
                return True
        return False

    return walk(descriptor)


def _is_base64(value: str) -> bool:
    """Whether ``value`` is base64 as proto3 JSON allows it (either alphabet, padding optional)."""
    body = value.rstrip("=")
    padding = len(value) - len(body)
    if not _BASE64.fullmatch(body) or len(body) % 4 == 1 or padding > 2:
        return False
    return padding == 0 or len(value) % 4 == 0


def _non_base64_field(value: Any, descriptor: Descriptor, path: str) -> str | None:
    """The path (``blob``, ``items[2].data``, ``tags["k"]``) of the first ``bytes`` value
    in ``value`` (the JSON of a ``descriptor`` message) that is not base64, else None."""
    if descriptor.full_name == _BYTES_VALUE:
        return path or "value" if isinstance(value, str) and not _is_base64(value) else None
    if not isinstance(value, dict) or descriptor.full_name in _NOT_WALKED:
        return None
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key) or _by_json_name(descriptor, key)
        if field is None or item is None:
            continue
        at = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            pairs = item.items() if isinstance(item, dict) else ()
            for k, v in pairs:
                bad = _non_base64_value(v, entry, f"{at}[{json.dumps(k)}]")
                if bad is not None:
                    return bad
        elif field.is_repeated:
            for i, v in enumerate(item if isinstance(item, list) else ()):
                bad = _non_base64_value(v, field, f"{at}[{i}]")
                if bad is not None:
                    return bad
        else:
            bad = _non_base64_value(item, field, at)
            if bad is not None:
                return bad
    return None


def _non_base64_value(value: Any, field: FieldDescriptor, path: str) -> str | None:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return path if isinstance(value, str) and not _is_base64(value) else None
    if field.message_type is not None:
        return _non_base64_field(value, field.message_type, path)
    return None


def _by_json_name(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    for field in descriptor.fields:
        if field.json_name == key:
            return field
    return None


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
    """One HTTP request as ``ConnectApp`` watches it: its headers as the ``Router`` reads
    them, did it reach an endpoint, and the runtime's refusal when it did not.

    A refusal of the runtime is known only by its response: an error status before
    any endpoint ran. That response is held (``held``, its body in ``body``) and
    answered again with the ``AppError`` it stands for. After an endpoint was
    entered, only a deadline's reply (HTTP 504) is held: the runtime's own, sent
    when ``Connect-Timeout-Ms`` ran out while the handler ran, carries no
    ``AppError`` and is answered again as ``TIMEOUT``.
    """

    __slots__ = ("body", "downstream", "headers", "held", "reached", "status")

    def __init__(self, send: Callable[[Any], Awaitable[None]], headers: dict[str, str]) -> None:
        self.downstream = send
        self.headers = headers
        self.reached = False
        self.status: int | None = None
        self.held: Mapping[str, Any] | None = None
        self.body = b""

    async def send(self, message: Any) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            self.status = int(message.get("status", 0))
            if self.status >= 400 and (not self.reached or self.status == 504):
                self.held = message
                return
        elif kind == "http.response.body" and self.held is not None:
            self.body += bytes(message.get("body", b""))  # the runtime's error: a few lines
            return
        await self.downstream(message)


#: The request being answered, so an endpoint can mark it reached.
_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "eventstore_rpc_exchange", default=None
)
#: Characters kept of the runtime's message in a refusal (it may quote the client's body).
_RUNTIME_MESSAGE_LIMIT = 500
#: Characters of a path kept in a refused request's subject (a path is the client's).
_SUBJECT_LIMIT = 200
#: Characters kept of a message type a client claims (``Es-Message-Type``) in a refusal.
_CLAIMED_TYPE_LIMIT = 200
_CONNECT_REQUEST = (
    "Send a Connect unary request (POST, application/json or application/proto) to "
    "/<package>.<Service>/<Method>."
)

#: logging_middleware's outcome for a cancelled request.
_CANCELLED = "CANCELLED"
#: What a refusal of the runtime is recorded as: by Connect code, then by HTTP status.
_BY_CONNECT_CODE = {
    "resource_exhausted": REQUEST_TOO_LARGE,
    "deadline_exceeded": TIMEOUT,
    "canceled": _CANCELLED,
    "internal": INTERNAL,
    "unknown": INTERNAL,
    "data_loss": INTERNAL,
}
_BY_STATUS = {404: NO_HANDLER}


class _Application(ConnectASGIApplication[object]):
    @property
    def path(self) -> str:
        return "/"


class HeaderError(ValueError):
    """A request header the app cannot read (``header`` names it); the request is refused."""

    def __init__(self, header: str, problem: str) -> None:
        self.header = header
        super().__init__(f"the {header} header {problem}")


def request_headers(raw: Iterable[tuple[str, str]]) -> dict[str, str]:
    """HTTP headers as the ``Router`` reads them: ``Es-*`` names in their canonical case.

    Custom metadata comes from ``Es-Meta-<key>`` headers (keys as HTTP delivers
    them: lowercased) and from the ``Es-Metadata`` header (percent-encoded
    ``key=value`` pairs, keys in their case), which wins for a key in both. A
    malformed ``Es-Metadata`` raises ``HeaderError``.
    """
    out: dict[str, str] = {}
    meta = CUSTOM_METADATA_PREFIX.lower()
    packed = METADATA_HEADER.lower()
    encoded: list[str] = []
    for name, value in raw:
        lowered = name.lower()
        if lowered in _CANONICAL:
            out[_CANONICAL[lowered]] = value
        elif lowered == packed:
            encoded.append(value)
        elif lowered.startswith(meta):
            out[CUSTOM_METADATA_PREFIX + name[len(meta) :]] = value
        else:
            out[lowered] = value
    for value in encoded:
        try:
            custom = decode_metadata(value)
        except ValueError as exc:
            raise HeaderError(
                METADATA_HEADER, f"is not percent-encoded key=value pairs joined by '&': {exc}"
            ) from None
        out.update({CUSTOM_METADATA_PREFIX + k: v for k, v in custom.items()})
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
        self._routes = {self._path(s): self.router.route(s) for s in self.router.subjects}
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
            headers = dict(exchange.headers)
        else:
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
        except Exception as exc:  # the hook failed (a key store down ...): its text may hold
            # secrets, so it stays in the log under an error id, as a handler's failure
            failure = internal_error(subject, exc)
            refused = await self.router.refuse(
                subject, failure, headers, message=message, tenant=tenant
            )
            raise connect_error(refused.error or failure) from None
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
        headers, refusal = self._read_request(scope)
        if refusal is not None:
            status, error = refusal
            extra = [(b"accept-post", b"application/json, application/proto")]
            await _send_error(send, status, error, extra if status == 415 else ())
            await self._record_refusal(scope, error, headers)
            return
        # The command id is fixed here, so a reply the runtime sends for the request
        # (a deadline that ran out in the handler) can name the one the router used.
        if not headers.get(COMMAND_ID_HEADER):
            headers[COMMAND_ID_HEADER] = new_command_id()
        exchange = _Exchange(send, headers)
        token = _EXCHANGE.set(exchange)
        try:
            await self._app(scope, receive, exchange.send)  # type: ignore[arg-type]
        finally:
            _EXCHANGE.reset(token)
            if exchange.held is not None and exchange.reached:
                await self._answer_late_deadline(scope, exchange)
            elif exchange.held is not None:
                await self._answer_runtime_refusal(scope, exchange)

    async def _answer_late_deadline(self, scope: Mapping[str, Any], exchange: _Exchange) -> None:
        """Answer a 504 sent after the endpoint was entered: the chain's own reply (an
        ``AppError`` in its details) as it is, the runtime's bare deadline as ``TIMEOUT``
        with the command id. The chain saw the request (its observers record it)."""
        held = exchange.held
        assert held is not None
        try:
            body = json.loads(exchange.body) if exchange.body else {}
            details = body.get("details", []) if isinstance(body, dict) else []
            own = app_error_from_details(details if isinstance(details, list) else [])
        except Exception:  # not a Connect error body: the runtime's, answered below
            own = None
        try:
            if own is not None:
                await exchange.downstream(held)
                await exchange.downstream({"type": "http.response.body", "body": exchange.body})
                return
            route = self._route_of(scope)
            subject = route.subject if route is not None else _subject_of(scope)
            command_id = exchange.headers.get(COMMAND_ID_HEADER) or new_command_id()
            timeout = _header(scope, b"connect-timeout-ms")
            details_out = {"subject": subject, "command_id": command_id}
            seconds = ""
            if timeout.isascii() and timeout.isdigit():
                details_out["timeout"] = seconds = f"{int(timeout) / 1000:g}"
            error = AppError(
                TIMEOUT,
                f"the request to {subject} ran out of its Connect-Timeout-Ms"
                + (f" ({seconds} s)" if seconds else "")
                + " while the handler ran: the command may or may not have been applied",
                f"Send the request again with the same command id ({command_id}); it is "
                "applied once. If the first try was applied, the reply is its original "
                "result. Give it a longer Connect-Timeout-Ms.",
                details_out,
            )
            await _send_error(exchange.downstream, 504, error, held.get("headers", ()))
        except Exception as exc:  # the client went away; nothing more can be sent
            log.debug("the deadline reply to %s was not sent: %r", _subject_of(scope), exc)

    def _read_request(
        self, scope: Mapping[str, Any]
    ) -> tuple[dict[str, str], tuple[int, AppError] | None]:
        """The request's headers as the router reads them, and the refusal (HTTP status,
        error) of a request refused before the runtime reads it.

        Refused here: gRPC and gRPC-Web (415), a header that is not UTF-8 text or a
        malformed ``Es-Metadata`` (``INVALID_REQUEST``), an ``Es-Message-Type`` that
        names another type than the path's (``INVALID_MESSAGE_TYPE``, the check the
        NATS host makes). A request without ``Es-Message-Type`` is read as the path's.
        """
        raw = list(scope.get("headers", ()))
        route = self._route_of(scope)
        subject = route.subject if route is not None else _subject_of(scope)
        if _is_grpc(scope):
            return _lenient_headers(raw), (415, _grpc_refusal(subject, route))
        try:
            headers = request_headers([(k.decode("latin-1"), _utf8(k, v)) for k, v in raw])
        except HeaderError as exc:
            refusal = AppError(
                INVALID_REQUEST,
                f"the request to {subject} was refused: {exc}",
                f"Send the {exc.header} header as UTF-8 text"
                + (
                    " (Es-Metadata: key=value pairs joined by '&', each key and value "
                    "percent-encoded as UTF-8: OrderRef=X-7&note=caf%C3%A9)."
                    if exc.header == METADATA_HEADER
                    else "."
                ),
                {"subject": subject, "header": exc.header},
            )
            return _lenient_headers(raw), (400, refusal)
        if route is not None and scope.get("method") == "POST":
            protocol = _connect_header_refusal(scope, route.subject)
            if protocol is not None:
                return headers, (400, protocol)
        claimed = headers.get(MESSAGE_TYPE_HEADER, "")
        if route is not None and claimed:
            expected = route.request_type.DESCRIPTOR.full_name
            if claimed != expected:
                actual = _printable(claimed, _CLAIMED_TYPE_LIMIT)
                refusal = AppError(
                    INVALID_MESSAGE_TYPE,
                    f"{route.subject} expects {expected}, got {actual}",
                    f"Send a request of type {expected}.",
                    {"subject": route.subject, "expected": expected, "actual": actual},
                )
                return headers, (400, refusal)
        return headers, None

    def _route_of(self, scope: Mapping[str, Any]) -> Route | None:
        """The route the runtime serves at the request's path (mounted or not), if any."""
        path = str(scope.get("path", ""))
        route = self._routes.get(path)
        root = str(scope.get("root_path", ""))
        if route is None and root:
            route = self._routes.get(path.removeprefix(root))
        return route

    async def _answer_runtime_refusal(self, scope: Mapping[str, Any], exchange: _Exchange) -> None:
        """Answer a refusal of the runtime (held by ``exchange``) with its ``AppError``:
        the runtime's status and headers, a Connect error body with the AppError in its
        details; then record it through the chain's observers."""
        held = exchange.held
        assert held is not None
        headers = dict(exchange.headers)
        headers.setdefault(COMMAND_ID_HEADER, new_command_id())
        try:
            error = self._runtime_refusal(scope, exchange, headers[COMMAND_ID_HEADER])
        except Exception:  # a bug here: still answer, with what the runtime said
            log.exception("reading the refusal of a request to %s failed", _subject_of(scope))
            error = AppError(INTERNAL, "the request was refused", "", {})
            as_sent = True
        else:
            as_sent = error.code == _CANCELLED
        try:
            if as_sent:  # e.g. the client is gone: the runtime's own reply, as it was
                await exchange.downstream(held)
                await exchange.downstream({"type": "http.response.body", "body": exchange.body})
            else:
                status = exchange.status or 500
                await _send_error(exchange.downstream, status, error, held.get("headers", ()))
        except Exception as exc:  # the client went away; nothing more can be sent
            log.debug("the refusal of a request to %s was not sent: %r", _subject_of(scope), exc)
        await self._record_refusal(scope, error, headers)

    async def _record_refusal(
        self, scope: Mapping[str, Any], error: AppError, headers: Mapping[str, str]
    ) -> None:
        """Run the chain's observers around a refusal no endpoint saw (the response is sent)."""
        subject = error.details.get("subject") or _subject_of(scope)
        try:
            headers = dict(headers)
            tenant = headers.pop(TENANT_ID_HEADER, "") or None
            await self.router.refuse(subject, error, headers, tenant=tenant)
        except Exception:  # the reply is gone already; a failure here must not reach the server
            log.exception("recording the refused request to %s failed", subject)

    def _runtime_refusal(
        self, scope: Mapping[str, Any], exchange: _Exchange, command_id: str
    ) -> AppError:
        """The ``AppError`` a refusal sent by the runtime stands for (known by its reply)."""
        status = exchange.status or 0
        connect_code, message = "", ""
        try:
            body = json.loads(exchange.body) if exchange.body else {}
            if isinstance(body, dict):
                connect_code, message = str(body.get("code", "")), str(body.get("message", ""))
        except ValueError:
            pass
        message = _printable(message, _RUNTIME_MESSAGE_LIMIT)
        route = self._route_of(scope)
        subject = route.subject if route is not None else _subject_of(scope)
        code = _BY_CONNECT_CODE.get(connect_code) or _BY_STATUS.get(status) or INVALID_REQUEST
        if code == REQUEST_TOO_LARGE:
            return self._too_large(scope, subject, command_id)
        if code == NO_HANDLER:
            return self._no_handler(scope, subject)
        if code == TIMEOUT:
            timeout = _header(scope, b"connect-timeout-ms")
            details = {"subject": subject, "command_id": command_id}
            if timeout.isdigit():
                details["timeout"] = f"{int(timeout) / 1000:g}"
            return AppError(
                TIMEOUT,
                f"the request to {subject} ran out of its Connect-Timeout-Ms before the handler "
                "ran; nothing was applied",
                f"Send the request again with the same command id ({command_id}), with a "
                "longer timeout.",
                details,
            )
        if code == INTERNAL:  # the runtime failed: its text stays in the log, as a handler's
            return internal_error(subject, RuntimeError(f"HTTP {status} {connect_code}: {message}"))
        details = {"subject": subject}
        if route is not None:
            details["expected"] = route.request_type.DESCRIPTOR.full_name
        method = scope.get("method", "")
        if route is not None and connect_code == "invalid_argument" and method == "POST":
            expected = details["expected"]
            return AppError(
                INVALID_REQUEST,
                f"the body sent to {subject} does not parse as {expected}: {message}",
                f"Send the {expected} as proto3 JSON (application/json) or serialized "
                "(application/proto).",
                details,
            )
        if not message:
            content_type = _printable(_header(scope, b"content-type"), 100)
            message = {
                405: f"HTTP {method} is not served here (Connect unary calls are POST)",
                415: f"the content type {content_type!r} is not served here",
            }.get(status, f"the request was refused with HTTP {status}")
        return AppError(
            code, f"the request to {subject} was refused: {message}", _CONNECT_REQUEST, details
        )

    def _too_large(self, scope: Mapping[str, Any], subject: str, command_id: str) -> AppError:
        limit = self.max_body_bytes
        size = _content_length(scope)
        details = {"subject": subject, "command_id": command_id}
        if size is not None and size > limit:
            details["size"] = str(size)
            what = f"is {size} bytes"
        else:  # sent in chunks, or compressed: its size is known only as it is read
            compressed = any(
                name.lower() == b"content-encoding" and value.strip().lower() != b"identity"
                for name, value in scope.get("headers", ())
            )
            what = f"is more than {limit} bytes" + (" (decompressed)" if compressed else "")
        details["limit"] = str(limit)
        return AppError(
            REQUEST_TOO_LARGE,
            f"the request to {subject} {what}, over the HTTP server's max_body_bytes of "
            f"{limit}; the handler did not run",
            "Send less in one request (keep large blobs outside the event store), or raise "
            "the ConnectApp's max_body_bytes.",
            details,
        )

    def _no_handler(self, scope: Mapping[str, Any], subject: str) -> AppError:
        service, _, method = subject.rpartition(".")
        known = [s.rpartition(".")[2] for s in self.router.subjects if s.startswith(service + ".")]
        if service and known:
            message = f"{service} has no method {method!r} (its methods: {', '.join(known)})"
            solution = "Call one of its methods; regenerate the client if the proto changed."
        else:
            services = sorted({s.rpartition(".")[0] for s in self.router.subjects})
            message = (
                f"no method is served at /{service + '/' if service else ''}{method} "
                f"(services served here: {', '.join(services) or 'none'})"
            )
            solution = _CONNECT_REQUEST
        return AppError(NO_HANDLER, message, solution, {"subject": subject})


def _connect_header_refusal(scope: Mapping[str, Any], subject: str) -> AppError | None:
    """``INVALID_REQUEST`` naming a Connect protocol header the runtime would refuse
    (``Connect-Protocol-Version`` other than 1, a ``Connect-Timeout-Ms`` that is not
    1 to 10 digits), else None. The runtime's own refusal would blame the body."""
    version = _header(scope, b"connect-protocol-version")
    if version and version != "1":
        return AppError(
            INVALID_REQUEST,
            f"the request to {subject} was refused: its Connect-Protocol-Version header is "
            f"{_printable(version, 20)!r}; only version 1 of the Connect protocol is served",
            "Send Connect-Protocol-Version: 1, or leave the header out.",
            {"subject": subject, "header": "Connect-Protocol-Version"},
        )
    timeout = _header(scope, b"connect-timeout-ms")
    if timeout and not (len(timeout) <= 10 and timeout.isascii() and timeout.isdigit()):
        return AppError(
            INVALID_REQUEST,
            f"the request to {subject} was refused: its Connect-Timeout-Ms header is "
            f"{_printable(timeout, 20)!r}, not a whole number of milliseconds",
            "Send Connect-Timeout-Ms as 1 to 10 digits (e.g. 5000 for 5 s), or leave the "
            "header out for no deadline.",
            {"subject": subject, "header": "Connect-Timeout-Ms"},
        )
    return None


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
    return _printable(subject, _SUBJECT_LIMIT) or "/"


def _printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, anything unprintable as ``?`` (it is the client's)."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _utf8(name: bytes, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        header = _printable(name.decode("latin-1"), 100)
        raise HeaderError(header, "is not UTF-8 text") from None


def _lenient_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers as ``request_headers`` reads them, read as Latin-1 and without
    ``Es-Metadata`` (what a refused request is recorded with: command id, trace context)."""
    packed = METADATA_HEADER.lower().encode()
    text = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw if k.lower() != packed)
    return request_headers(text)


def _header(scope: Mapping[str, Any], name: bytes) -> str:
    """The first value of header ``name`` (lowercase) as Latin-1 text, else ""."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _content_length(scope: Mapping[str, Any]) -> int | None:
    length = _header(scope, b"content-length")
    return int(length) if length.isdigit() else None


def _grpc_refusal(subject: str, route: Route | None) -> AppError:
    details = {"subject": subject}
    if route is not None:
        details["expected"] = route.request_type.DESCRIPTOR.full_name
    return AppError(
        INVALID_REQUEST,
        f"the request to {subject} was refused: only the Connect protocol is served here "
        "(gRPC and gRPC-Web requests are refused)",
        _CONNECT_REQUEST,
        details,
    )


async def _send_error(
    send: Callable[[Any], Awaitable[None]],
    status: int,
    error: AppError,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send ``error`` as a Connect error reply (JSON, the AppError in its details) with
    HTTP ``status``, keeping ``headers`` other than the content's type and length."""
    body = ConnectWireError.from_exception(connect_error(error)).to_json_bytes()
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
    kept += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": kept})
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
    "HeaderError",
    "app_error_from_details",
    "connect_error",
    "request_headers",
    "serve_http",
]
