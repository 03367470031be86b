"""The in-process transport: routing, type checks, middlewares, error replies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from eventstore import (
    AggregateNotFoundError,
    AppError,
    ConcurrencyError,
    UniqueConstraintError,
    VersionNotFoundError,
)
from eventstore.core.errors import UniqueConstraintReleaseError
from eventstore.core.transport import (
    COMMAND_ID_HEADER,
    InProcessTransport,
    RequestContext,
    Response,
    Route,
    Transport,
    metadata_headers,
)

S = wrappers_pb2.StringValue
I = wrappers_pb2.Int64Value  # noqa: E741


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def echo(msg: Message, ctx: RequestContext) -> Message:
    return S(value=msg.value.upper())  # type: ignore[attr-defined]


def test_routes_a_subject_to_its_handler() -> None:
    transport = InProcessTransport(Route("t.Echo", S, S, echo))
    response = run(transport.request("t.Echo", S(value="hi")))
    assert response.success
    assert response.unwrap(S).value == "HI"
    assert isinstance(transport, Transport)


def test_async_handlers_are_awaited() -> None:
    async def slow(msg: Message, ctx: RequestContext) -> Message:
        await asyncio.sleep(0)
        return S(value="later")

    transport = InProcessTransport(Route("t.Slow", S, S, slow))
    assert run(transport.request("t.Slow", S())).unwrap(S).value == "later"


def test_wrong_request_type_is_rejected_before_the_handler_runs() -> None:
    called = []
    transport = InProcessTransport(Route("t.Echo", S, S, lambda m, c: called.append(m) or S()))
    response = run(transport.request("t.Echo", I(value=3)))
    assert not response.success
    assert response.error is not None
    assert response.error.code == "INVALID_MESSAGE_TYPE"
    assert response.error.details == {
        "subject": "t.Echo",
        "expected": "google.protobuf.StringValue",
        "actual": "google.protobuf.Int64Value",
    }
    assert called == []


def test_unknown_subject_is_a_no_handler_error_naming_the_subject() -> None:
    response = run(InProcessTransport().request("t.Nope", S()))
    assert response.error is not None
    assert response.error.code == "NO_HANDLER"
    assert "'t.Nope'" in response.error.message


def test_app_error_from_a_handler_reaches_the_caller_with_its_fields() -> None:
    def refuse(msg: Message, ctx: RequestContext) -> Message:
        raise AppError("INSUFFICIENT_FUNDS", "too little", "deposit first", {"balance": "3"})

    response = run(InProcessTransport(Route("t.Pay", S, S, refuse)).request("t.Pay", S()))
    with pytest.raises(AppError) as caught:
        response.unwrap(S)
    assert (caught.value.code, caught.value.solution, caught.value.details) == (
        "INSUFFICIENT_FUNDS",
        "deposit first",
        {"balance": "3"},
    )


def test_unexpected_exception_becomes_internal_error_keeping_the_cause() -> None:
    def crash(msg: Message, ctx: RequestContext) -> Message:
        raise ZeroDivisionError("boom")

    response = run(InProcessTransport(Route("t.Crash", S, S, crash)).request("t.Crash", S()))
    with pytest.raises(AppError) as caught:
        response.unwrap(S)
    assert caught.value.code == "INTERNAL"
    assert "ZeroDivisionError: boom" in caught.value.message
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_handler_returning_the_wrong_type_is_an_internal_error() -> None:
    response = run(
        InProcessTransport(Route("t.Bad", S, S, lambda m, c: I(value=1))).request("t.Bad", S())
    )
    assert response.error is not None and response.error.code == "INTERNAL"
    assert "must return google.protobuf.StringValue" in response.error.message


def test_middlewares_wrap_the_handler_first_added_outermost() -> None:
    trace: list[str] = []

    def tracer(name: str) -> Callable[..., Awaitable[Message]]:
        async def mw(msg: Message, ctx: RequestContext, call_next: Any) -> Message:
            trace.append(f"{name} in")
            reply = await call_next(msg, ctx)
            trace.append(f"{name} out")
            return reply

        return mw

    transport = InProcessTransport(Route("t.Echo", S, S, echo), middlewares=[tracer("a")])
    transport.use(tracer("b"))
    run(transport.request("t.Echo", S(value="x")))
    assert trace == ["a in", "b in", "b out", "a out"]


def test_a_middleware_can_refuse_a_request() -> None:
    async def auth(msg: Message, ctx: RequestContext, call_next: Any) -> Message:
        if not ctx.metadata.principal_id:
            raise AppError("UNAUTHENTICATED", "who are you?")
        ctx.values["principal"] = ctx.metadata.principal_id
        return await call_next(msg, ctx)

    seen: list[object] = []

    def handler(msg: Message, ctx: RequestContext) -> Message:
        seen.append(ctx.values["principal"])
        return S()

    transport = InProcessTransport(Route("t.H", S, S, handler), middlewares=[auth])
    refused = run(transport.request("t.H", S()))
    allowed = run(transport.request("t.H", S(), metadata_headers({"principal_id": "ann"})))
    assert refused.error is not None and refused.error.code == "UNAUTHENTICATED"
    assert allowed.success and seen == ["ann"]


def test_command_id_and_metadata_reach_the_handler() -> None:
    seen: list[RequestContext] = []

    def handler(msg: Message, ctx: RequestContext) -> Message:
        seen.append(ctx)
        return S()

    headers = metadata_headers({"tenant_id": "t1", "correlation_id": "corr", "source": "ui"})
    headers[COMMAND_ID_HEADER] = "cmd-1"
    run(InProcessTransport(Route("t.H", S, S, handler)).request("t.H", S(), headers))
    meta = seen[0].metadata
    assert seen[0].command_id == "cmd-1"
    assert (meta.causation_id, meta.correlation_id, meta.tenant_id, dict(meta.custom)) == (
        "cmd-1",
        "corr",
        "t1",
        {"source": "ui"},
    )


def test_a_request_without_command_id_gets_a_new_one() -> None:
    seen: list[str] = []
    transport = InProcessTransport(
        Route("t.H", S, S, lambda m, c: seen.append(c.command_id) or S())
    )
    run(transport.request("t.H", S()))
    run(transport.request("t.H", S()))
    assert len(set(seen)) == 2 and all(seen)


def test_registering_a_subject_twice_is_refused() -> None:
    transport = InProcessTransport(Route("t.Echo", S, S, echo))
    with pytest.raises(ValueError, match="already has a handler"):
        transport.register(Route("t.Echo", S, S, echo))


def test_response_crosses_the_wire_as_the_eventsourcing_response_proto() -> None:
    ok = Response.ok(S(value="data"))
    wire = ok.to_proto().SerializeToString()
    from eventstore.proto.eventsourcing import response_pb2

    back = Response.from_proto(response_pb2.Response.FromString(wire))
    assert isinstance(back.data, any_pb2.Any)
    assert back.unwrap(S).value == "data"
    failed = Response.failure(AppError("X", "m", "s", {"k": "v"})).to_proto()
    error = Response.from_proto(response_pb2.Response.FromString(failed.SerializeToString()))
    assert error.error is not None
    assert (error.error.code, error.error.details) == ("X", {"k": "v"})


def test_unwrap_refuses_a_reply_of_another_type() -> None:
    with pytest.raises(AppError) as caught:
        Response.ok(I(value=1)).unwrap(S)
    assert caught.value.code == "INVALID_RESPONSE_TYPE"


# -- the framework's own errors, raised inside a handler -----------------------------------
def reply_to(error: Exception) -> AppError:
    """The error a caller receives when a handler raises ``error``."""

    def fail(msg: Message, ctx: RequestContext) -> Message:
        raise error

    response = run(InProcessTransport(Route("t.Fail", S, S, fail)).request("t.Fail", S()))
    assert not response.success and response.error is not None
    # What crosses a wire (NATS, HTTP) is the eventsourcing.Response proto.
    from eventstore.proto.eventsourcing import response_pb2

    wire = response_pb2.Response.FromString(response.to_proto().SerializeToString())
    crossed = Response.from_proto(wire).error
    assert crossed is not None
    assert (crossed.code, crossed.message, crossed.details) == (
        response.error.code,
        response.error.message,
        response.error.details,
    )
    return response.error


def test_aggregate_not_found_in_a_handler_is_a_not_found_error() -> None:
    error = reply_to(AggregateNotFoundError("acc-9", "Account"))
    assert error.code == "NOT_FOUND"
    assert error.message == str(AggregateNotFoundError("acc-9", "Account"))
    assert error.details == {"aggregate_id": "acc-9", "aggregate_type": "Account"}
    assert error.solution and "bug" not in error.solution


def test_version_not_found_in_a_handler_is_a_not_found_error() -> None:
    error = reply_to(VersionNotFoundError("acc-1", 9, 4))
    assert error.code == "NOT_FOUND"
    assert "has no version 9" in error.message
    assert error.details == {"aggregate_id": "acc-1", "requested": "9", "current": "4"}
    assert "1 to 4" in error.solution


def test_concurrency_error_in_a_handler_is_a_concurrency_conflict_with_both_versions() -> None:
    error = reply_to(ConcurrencyError("acc-1", 3, 5))
    assert error.code == "CONCURRENCY_CONFLICT"
    assert error.message == str(ConcurrencyError("acc-1", 3, 5))
    command_id = error.details.pop("command_id")  # the request's, to resend with
    assert error.details == {"aggregate_id": "acc-1", "expected": "3", "actual": "5"}
    assert f"same command id ({command_id})" in error.solution


def test_unique_constraint_error_in_a_handler_names_the_index_and_value_but_not_the_owner() -> (
    None
):
    error = reply_to(UniqueConstraintError("email", "ann@x.org", "cust-1", "cust-2"))
    assert error.code == "UNIQUE_CONSTRAINT"
    assert "'ann@x.org' of unique index 'email' is already claimed" in error.message
    assert "cust-1" not in error.message
    assert error.details == {"index": "email", "value": "ann@x.org"}
    assert "email" in error.solution


def test_releasing_a_value_not_owned_is_still_an_internal_error() -> None:
    error = reply_to(UniqueConstraintReleaseError("email", "ann@x.org", "cust-1", "cust-2"))
    assert error.code == "INTERNAL"


def test_framework_error_keeps_its_exception_as_the_cause_in_process() -> None:
    def fail(msg: Message, ctx: RequestContext) -> Message:
        raise ConcurrencyError("acc-1", 3, 5)

    response = run(InProcessTransport(Route("t.Fail", S, S, fail)).request("t.Fail", S()))
    with pytest.raises(AppError) as caught:
        response.unwrap(S)
    assert isinstance(caught.value.__cause__, ConcurrencyError)


def test_a_middleware_sees_the_framework_error_itself() -> None:
    # Mapping to a reply happens outside the chain, so a middleware can retry on conflict.
    seen: list[type[BaseException]] = []

    async def watch(msg: Message, ctx: RequestContext, call_next: Any) -> Message:
        try:
            return await call_next(msg, ctx)
        except Exception as exc:
            seen.append(type(exc))
            raise

    def fail(msg: Message, ctx: RequestContext) -> Message:
        raise ConcurrencyError("acc-1", 3, 5)

    transport = InProcessTransport(Route("t.Fail", S, S, fail), middlewares=[watch])
    response = run(transport.request("t.Fail", S()))
    assert seen == [ConcurrencyError]
    assert response.error is not None and response.error.code == "CONCURRENCY_CONFLICT"


def test_wrong_request_type_message_names_the_expected_type_without_an_article() -> None:
    transport = InProcessTransport(Route("t.Echo", S, S, echo))
    response = run(transport.request("t.Echo", I(value=3)))
    assert response.error is not None
    assert response.error.message == (
        "t.Echo expects google.protobuf.StringValue, got google.protobuf.Int64Value"
    )
    assert response.error.solution == "Send a request of type google.protobuf.StringValue."


def test_every_name_importable_from_the_transport_module_before_the_split_still_is() -> None:
    # Generated code and applications import these from eventstore.core.transport.
    import eventstore.core.transport as transport

    names = [
        "COMMAND_ID_HEADER",
        "CORRELATION_ID_HEADER",
        "PRINCIPAL_ID_HEADER",
        "TENANT_ID_HEADER",
        "CUSTOM_METADATA_PREFIX",
        "INVALID_MESSAGE_TYPE",
        "INVALID_RESPONSE_TYPE",
        "NO_HANDLER",
        "INTERNAL",
        "NOT_FOUND",
        "CONCURRENCY_CONFLICT",
        "UNIQUE_CONSTRAINT",
        "metadata_headers",
        "RequestContext",
        "Response",
        "Transport",
        "Handler",
        "NextCall",
        "Middleware",
        "Route",
        "ServiceBinding",
        "Router",
        "app_error_for",
        "InProcessTransport",
    ]
    assert [n for n in names if not hasattr(transport, n)] == []


def test_app_error_for_leaves_exceptions_that_are_not_the_frameworks_unmapped() -> None:
    from eventstore.core.responses import app_error_for

    assert app_error_for(ValueError("a bug")) is None
