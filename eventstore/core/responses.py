"""A request's reply (``Response``), its wire form, and the error codes a caller can act on.

On a wire the reply is the ``eventsourcing.Response`` proto (success,
``AppError``, ``Any`` data); ``Response.to_proto``/``from_proto`` convert.
``app_error_for`` says which error a caller gets when a handler lets one of
the framework's own errors escape; the table is in docs/codegen.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

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

M = TypeVar("M", bound=Message)

#: Error codes the transport itself produces.
INVALID_MESSAGE_TYPE = "INVALID_MESSAGE_TYPE"
INVALID_RESPONSE_TYPE = "INVALID_RESPONSE_TYPE"
NO_HANDLER = "NO_HANDLER"
INTERNAL = "INTERNAL"
#: Error codes of the framework's own errors raised inside a handler (see ``app_error_for``).
NOT_FOUND = "NOT_FOUND"
CONCURRENCY_CONFLICT = "CONCURRENCY_CONFLICT"
UNIQUE_CONSTRAINT = "UNIQUE_CONSTRAINT"


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


def app_error_for(exc: BaseException) -> AppError | None:
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


__all__ = [
    "CONCURRENCY_CONFLICT",
    "INTERNAL",
    "INVALID_MESSAGE_TYPE",
    "INVALID_RESPONSE_TYPE",
    "NOT_FOUND",
    "NO_HANDLER",
    "UNIQUE_CONSTRAINT",
    "Response",
    "app_error_for",
]
