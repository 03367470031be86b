"""A request's reply (``Response``), its wire form, and the one table of error codes.

On a wire the reply is the ``eventsourcing.Response`` proto (success,
``AppError``, ``Any`` data); ``Response.to_proto``/``from_proto`` convert.

``ERROR_CODES`` is the table every transport cites instead of inventing
codes: for each ``AppError`` code, the exceptions that become it, the
Connect code and HTTP status, and the NATS service error (code and
description). ``app_error_for`` turns one of the framework's own exceptions
into its ``AppError``; ``transport_unavailable`` and ``transport_timeout``
are what a client's transport returns when the wire itself fails.
``render_error_table`` writes the table into docs/errors.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from ..proto.eventsourcing import response_pb2
from .errors import AppError

M = TypeVar("M", bound=Message)

#: Error codes the transport itself produces.
INVALID_MESSAGE_TYPE = "INVALID_MESSAGE_TYPE"
INVALID_RESPONSE_TYPE = "INVALID_RESPONSE_TYPE"
NO_HANDLER = "NO_HANDLER"
INTERNAL = "INTERNAL"
#: Error codes of a wire's server side: bytes that are no request, a reply the wire cannot carry.
INVALID_REQUEST = "INVALID_REQUEST"
REPLY_TOO_LARGE = "REPLY_TOO_LARGE"
#: Error code of a client whose request is too large for the wire (nothing was sent).
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
#: Error codes of the framework's own errors raised inside a handler (see ``app_error_for``).
NOT_FOUND = "NOT_FOUND"
CONCURRENCY_CONFLICT = "CONCURRENCY_CONFLICT"
UNIQUE_CONSTRAINT = "UNIQUE_CONSTRAINT"
COMMAND_ID_CONFLICT = "COMMAND_ID_CONFLICT"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
#: Error codes of the service edge: authentication, authorization, tenancy, validation.
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
TENANT_FORBIDDEN = "TENANT_FORBIDDEN"
TENANT_MISMATCH = "TENANT_MISMATCH"
INVALID_TENANT = "INVALID_TENANT"
VALIDATION_FAILED = "VALIDATION_FAILED"
MISSING_METADATA = "MISSING_METADATA"
#: Error codes of a failed wire: the client's transport makes them, with the command id.
UNAVAILABLE = "UNAVAILABLE"
TIMEOUT = "TIMEOUT"
#: The row of every other code: a business error the handler raised as ``AppError``.
BUSINESS = "*"


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
            # No type URL: a reply whose type the wire does not name (a Connect
            # unary body), which is the type the caller expects.
            name = type_url.rpartition("/")[2] if type_url else expected
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


@dataclass(frozen=True, slots=True)
class RaisedAs:
    """An exception that becomes a row's code: its class name, details and solution.

    ``details`` name the exception's attributes sent as the error's details
    (``command_id`` is the request's when the exception has none); ``solution``
    is formatted with them. ``message``, when set, replaces the exception's own
    text on the wire (formatted with the details): storage errors name server
    files, which a client must not see.
    """

    exception: str
    details: tuple[str, ...] = ()
    solution: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One row of the error table: a code, where it comes from, how each wire carries it.

    The NATS service error carries ``nats_code`` (the HTTP status, as NATS
    micro services do) in ``Nats-Service-Error-Code`` and ``nats_description``
    (the code) in ``Nats-Service-Error``; the ``Response`` body carries the
    ``AppError`` itself on every wire.
    """

    code: str
    connect_code: str
    http_status: int
    origin: str
    meaning: str
    raised_as: tuple[RaisedAs, ...] = ()

    @property
    def nats_code(self) -> str:
        return str(self.http_status)

    @property
    def nats_description(self) -> str:
        return self.code


_RETRY = "Send the request again with the same command id ({command_id}); it is applied once."

ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode(
        BUSINESS,
        "failed_precondition",
        400,
        "handler",
        "A business rule refused the command (`AppError(code, ...)`, e.g. `INSUFFICIENT_FUNDS`); "
        "its message, solution and details are the handler's.",
        (RaisedAs("AppError"),),
    ),
    ErrorCode(
        NOT_FOUND,
        "not_found",
        404,
        "handler",
        "The aggregate, or the version asked for, does not exist.",
        (
            RaisedAs(
                "AggregateNotFoundError",
                ("aggregate_id", "aggregate_type"),
                "Check the aggregate id; send the command that creates the aggregate first.",
            ),
            RaisedAs(
                "VersionNotFoundError",
                ("aggregate_id", "requested", "current"),
                "Ask for a version from 1 to {current}.",
            ),
        ),
    ),
    ErrorCode(
        CONCURRENCY_CONFLICT,
        "aborted",
        409,
        "handler",
        "Another writer changed the aggregate first; nothing was written.",
        (
            RaisedAs(
                "ConcurrencyError",
                ("aggregate_id", "expected", "actual", "command_id"),
                "Send the request again with the same command id ({command_id}); it is "
                "applied once, on the aggregate's current state.",
            ),
        ),
    ),
    ErrorCode(
        UNIQUE_CONSTRAINT,
        "already_exists",
        409,
        "handler",
        "A unique value the command claims belongs to another aggregate; nothing was written.",
        (
            RaisedAs(
                "UniqueConstraintError",
                ("index", "value"),
                "Choose another value for {index}.",
                "value {value!r} of unique index {index!r} is already claimed by another aggregate",
            ),
        ),
    ),
    ErrorCode(
        COMMAND_ID_CONFLICT,
        "already_exists",
        409,
        "handler",
        "The command id was used for another aggregate (a client bug: a retry goes to the "
        "aggregate of its first run); nothing was written.",
        (
            RaisedAs(
                "CommandIdConflictError",
                ("command_id", "aggregate_id"),
                "Send the new command under a new command id.",
            ),
        ),
    ),
    ErrorCode(
        INVALID_ARGUMENT,
        "invalid_argument",
        400,
        "handler",
        "A value of the request cannot be used as it is (an empty aggregate id, an id "
        "another aggregate type holds, too large, out of range); nothing was written.",
        (
            RaisedAs(
                "InvalidAggregateIdError",
                ("aggregate_type", "id_field"),
                "Set the aggregate's id (a non-empty string) in the request and send it again.",
            ),
            RaisedAs(
                "AggregateTypeMismatchError",
                ("aggregate_id", "aggregate_type", "stored_type"),
                "Use another id for the {aggregate_type}: {aggregate_id!r} belongs to a "
                "{stored_type}, and sending it again fails the same way.",
            ),
            RaisedAs(
                "PayloadTooLargeError",
                ("aggregate_id", "size", "limit"),
                "Store less in one event (split it, or keep large blobs outside the store).",
                "an event of aggregate {aggregate_id!r} is {size} bytes, over the store's "
                "limit of {limit}",
            ),
            RaisedAs(
                "IntegerRangeError",
                ("name", "value"),
                "Use a value below 2**63.",
                "{name} = {value} is outside the store's integer range",
            ),
            RaisedAs(
                "NulByteError",
                ("field",),
                "Remove the NUL byte ('\\x00') from {field} and send the request again.",
                "{field} holds a NUL byte, which the service's store (PostgreSQL) cannot hold",
            ),
            RaisedAs(
                "ValueTooLargeError",
                ("field", "size", "limit"),
                "Use a shorter value (for a unique value, claim its hash); sending it again "
                "fails the same way.",
                "{field} is too long for the service's store (size {size}, limit {limit} bytes)",
            ),
        ),
    ),
    ErrorCode(
        UNAUTHENTICATED,
        "unauthenticated",
        401,
        "network host",
        "No credentials, or bad ones (expired, wrong audience or issuer, an algorithm not "
        "allowed); the handler did not run (details: `reason`).",
        (RaisedAs("AuthenticationError", ("reason",)),),
    ),
    ErrorCode(
        PERMISSION_DENIED,
        "permission_denied",
        403,
        "authorization_middleware",
        "The principal has none of the roles the subject allows (or the subject has no "
        "rule, on a network host); the handler did not run.",
        (RaisedAs("PermissionDeniedError", ("principal_id", "subject")),),
    ),
    ErrorCode(
        TENANT_FORBIDDEN,
        "permission_denied",
        403,
        "router",
        "The principal asked to act for a tenant it does not belong to; nothing ran.",
        (RaisedAs("TenantForbiddenError", ("principal_id", "tenant_id")),),
    ),
    ErrorCode(
        TENANT_MISMATCH,
        "permission_denied",
        403,
        "repository",
        "The aggregate id belongs to no tenant of this request (another tenant's, one "
        "containing `::`, or no tenant set); nothing was read or written.",
        (RaisedAs("TenantMismatchError", ("aggregate_id", "tenant_id")),),
    ),
    ErrorCode(
        INVALID_TENANT,
        "invalid_argument",
        400,
        "router",
        "The tenant id does not match `^[a-z0-9][a-z0-9_-]{0,63}$`; nothing ran.",
        (RaisedAs("InvalidTenantError", ("tenant_id",)),),
    ),
    ErrorCode(
        VALIDATION_FAILED,
        "invalid_argument",
        400,
        "validation_middleware",
        "The request breaks its message's validation rules; details name each field "
        "(`field.<name>`: rule); the handler did not run.",
        (RaisedAs("ValidationError", ("message_type",)),),
    ),
    ErrorCode(
        MISSING_METADATA,
        "invalid_argument",
        400,
        "require_metadata",
        "The request lacks metadata the subject requires (details: `subject`, `missing`); "
        "the handler did not run.",
    ),
    ErrorCode(
        INVALID_MESSAGE_TYPE,
        "invalid_argument",
        400,
        "router",
        "The request is not of the type the subject takes; the handler did not run.",
    ),
    ErrorCode(
        NO_HANDLER,
        "unimplemented",
        501,
        "router",
        "No handler is registered for the subject (over NATS: a method the service does not "
        "have; over HTTP: no method at the path, with HTTP status 404; details: `subject`).",
    ),
    ErrorCode(
        INVALID_REQUEST,
        "invalid_argument",
        400,
        "NATS or HTTP host",
        "The request's bytes do not parse as the message the subject takes (over HTTP also: "
        "a wrong method, content type or header, with the runtime's HTTP status); the handler "
        "did not run (details: `subject`, `expected`).",
    ),
    ErrorCode(
        REPLY_TOO_LARGE,
        "internal",
        500,
        "NATS service host",
        "The handler ran (a command was applied) but its reply is larger than the NATS "
        "server's `max_payload`; details: `subject`, `command_id`, `size`, `limit`. Retrying "
        "with the same command id gives the same too-large reply: make the reply smaller.",
    ),
    ErrorCode(
        REQUEST_TOO_LARGE,
        "resource_exhausted",
        429,
        "client (NATS transport), HTTP host",
        "The request is larger than the NATS server's `max_payload` (nothing was sent) or the "
        "`ConnectApp`'s `max_body_bytes` (the handler did not run); details: `subject`, "
        "`command_id`, `size` (over HTTP: when the request gave its length), `limit`.",
    ),
    ErrorCode(
        INTERNAL,
        "internal",
        500,
        "router",
        "The handler failed: a bug of the service, not of the request (details: `subject`; "
        "the server logs the traceback).",
        (
            RaisedAs("UniqueConstraintReleaseError"),
            RaisedAs("DuplicateEventIdError"),
            RaisedAs("EventDecodeError"),
            RaisedAs("UnknownProjectionError"),
            RaisedAs("ProcessManagerFailedError"),
            RaisedAs("CodegenError"),
            RaisedAs("ModelError"),
            RaisedAs("ProtoCompileError"),
            RaisedAs("EventStoreError"),
            RaisedAs("StorageError"),
            RaisedAs("ReadOnlyStoreError"),
            RaisedAs("NotADatabaseError"),
            RaisedAs("CorruptDatabaseError"),
            RaisedAs("ForeignDatabaseError"),
            RaisedAs("SchemaVersionError"),
            RaisedAs("InterruptedCopyError"),
            RaisedAs("SchemaMigrationNeededError"),
            RaisedAs("StoreURLError"),
            RaisedAs("AdapterUnavailableError"),
            RaisedAs("BusClosedError"),
            RaisedAs("BusHistoryTruncatedError"),
            RaisedAs("StreamConfigMismatchError"),
            RaisedAs("ConsumerFilterMismatchError"),
            RaisedAs("ConsumerConfigMismatchError"),
            RaisedAs("SideStreamConflictError"),
            RaisedAs("OldSideStreamsError"),
            RaisedAs("RedeliveryConfigError"),
            RaisedAs("NatsServerNotFoundError"),
            RaisedAs("NatsServerStartError"),
            RaisedAs("NatsTLSError"),
            RaisedAs("NatsUrlError"),
            RaisedAs("BusLoopStoppedError"),
            RaisedAs("EventTooLargeError"),
        ),
    ),
    ErrorCode(
        UNAVAILABLE,
        "unavailable",
        503,
        "transport, or a server shutting down",
        "The request did not reach a service, or the service's store closed under it or was "
        "locked by another writer, or the caller closed its transport while the reply was due "
        "(then the command may have been applied); retry with the same command id (details: "
        "`command_id`, and `subject` from the transport).",
        (
            RaisedAs("StoreClosedError", ("command_id",), _RETRY),
            RaisedAs(
                "StorageFullError",
                ("command_id",),
                _RETRY + " Wait until the service has room again.",
                "the service's storage is full; nothing was written",
            ),
            RaisedAs(
                "StoreBusyError",
                ("command_id", "busy_timeout"),
                _RETRY + " Another writer held the service's database; it is free again soon.",
                "another writer held the service's database lock for longer than its busy "
                "timeout ({busy_timeout} s); nothing was written",
            ),
        ),
    ),
    ErrorCode(
        TIMEOUT,
        "deadline_exceeded",
        504,
        "transport",
        "No reply in time: the command may or may not have been applied; retry with the same "
        "command id (details: `subject`, `command_id`, `timeout`).",
    ),
    ErrorCode(
        INVALID_RESPONSE_TYPE,
        "internal",
        500,
        "client",
        "The reply is not of the type the client expects (client and server generated from "
        "different protos).",
    ),
)

_BY_CODE: dict[str, ErrorCode] = {row.code: row for row in ERROR_CODES}
_BY_EXCEPTION: dict[str, tuple[ErrorCode, RaisedAs]] = {
    raised.exception: (row, raised) for row in ERROR_CODES for raised in row.raised_as
}


def error_code(code: str) -> ErrorCode:
    """The row of ``code``; a code not in the table is a business error's (``BUSINESS``)."""
    return _BY_CODE.get(code) or _BY_CODE[BUSINESS]


def error_code_of(exception: type[BaseException]) -> tuple[ErrorCode, RaisedAs] | None:
    """The row an exception class becomes (its own, else its nearest ancestor's), or None."""
    for cls in exception.__mro__:
        found = _BY_EXCEPTION.get(cls.__name__)
        if found is not None:
            return found
    return None


def app_error_for(exc: BaseException, command_id: str = "") -> AppError | None:
    """The wire form of one of the framework's own errors, or None for any other exception.

    A handler that lets ``AggregateNotFoundError``, ``VersionNotFoundError``,
    ``ConcurrencyError``, ``UniqueConstraintError``, ``CommandIdConflictError``
    or ``InvalidAggregateIdError`` escape is telling the caller something about
    the request (no such aggregate, a lost race, a taken value, a reused
    command id, no aggregate id), not failing: the caller gets a code it can
    act on (``ERROR_CODES``), the error's own message and what to do, with the
    error's facts as details. Errors whose solution is to resend with the same
    command id carry the request's ``command_id`` in their details, so a caller
    whose SDK made the id can do so: ``ConcurrencyError``, and
    ``StoreClosedError`` (the server is shutting down: ``UNAVAILABLE``). Errors in the
    ``INTERNAL`` row (a ``UniqueConstraintReleaseError`` releasing a value the
    aggregate does not own, and the like) are bugs of the service: None, and
    the router answers ``INTERNAL``.
    """
    if isinstance(exc, AppError):
        return exc
    found = error_code_of(type(exc))
    if found is None or found[0].code in (INTERNAL, BUSINESS):
        return None
    row, raised = found
    details = {
        name: _detail(getattr(exc, name, command_id if name == "command_id" else ""))
        for name in raised.details
    }
    message = raised.message.format(**details) if raised.message else str(exc)
    return AppError(row.code, message, raised.solution.format(**details), details)


def _detail(value: object) -> str:
    return "" if value is None else str(value)


def transport_unavailable(subject: str, command_id: str, cause: str) -> AppError:
    """What a client's transport returns when the request could not be delivered."""
    return AppError(
        UNAVAILABLE,
        f"the request to {subject} did not reach a service: {cause}",
        _RETRY.format(command_id=command_id) + " Check that the service is running.",
        {"subject": subject, "command_id": command_id},
    )


def transport_timeout(subject: str, command_id: str, timeout: float) -> AppError:
    """What a client's transport returns when no reply came within ``timeout`` seconds."""
    return AppError(
        TIMEOUT,
        f"no reply from {subject} within {timeout:g} s: the command may or may not have been "
        "applied",
        _RETRY.format(command_id=command_id)
        + " If the first try was applied, the reply is its original result.",
        {"subject": subject, "command_id": command_id, "timeout": f"{timeout:g}"},
    )


def render_error_table(codes: tuple[ErrorCode, ...] = ERROR_CODES) -> str:
    """The error table as markdown (docs/errors.md holds this text between its markers)."""
    lines = [
        "| code | raised as (details) | Connect | HTTP | NATS (code / description) "
        "| from | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in codes:
        code = "any other code" if row.code == BUSINESS else f"`{row.code}`"
        raised = "<br>".join(
            f"`{r.exception}`"
            + (f" ({', '.join(f'`{d}`' for d in r.details)})" if r.details else "")
            for r in row.raised_as
        )
        description = "the code" if row.code == BUSINESS else f"`{row.nats_description}`"
        nats = f"`{row.nats_code}` / {description}"
        lines.append(
            f"| {code} | {raised or '—'} | `{row.connect_code}` | {row.http_status} | {nats} "
            f"| {row.origin} | {row.meaning} |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "BUSINESS",
    "COMMAND_ID_CONFLICT",
    "CONCURRENCY_CONFLICT",
    "ERROR_CODES",
    "INTERNAL",
    "INVALID_ARGUMENT",
    "INVALID_MESSAGE_TYPE",
    "INVALID_REQUEST",
    "INVALID_TENANT",
    "MISSING_METADATA",
    "PERMISSION_DENIED",
    "TENANT_FORBIDDEN",
    "TENANT_MISMATCH",
    "UNAUTHENTICATED",
    "VALIDATION_FAILED",
    "INVALID_RESPONSE_TYPE",
    "NOT_FOUND",
    "NO_HANDLER",
    "REPLY_TOO_LARGE",
    "REQUEST_TOO_LARGE",
    "TIMEOUT",
    "UNAVAILABLE",
    "UNIQUE_CONSTRAINT",
    "ErrorCode",
    "RaisedAs",
    "Response",
    "app_error_for",
    "error_code",
    "error_code_of",
    "render_error_table",
    "transport_timeout",
    "transport_unavailable",
]
