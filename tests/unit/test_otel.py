"""OpenTelemetry through the SDK's in-memory exporters: spans, their parents, metrics, context."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from eventstore import EveryNEvents
from eventstore.auth import Principal
from eventstore.core import instrumentation
from eventstore.core.routing import RequestContext, Route, Router
from eventstore.otel import OtelHook, otel_middleware, span_name
from eventstore.sqlite import SQLiteEventStore
from eventstore.tenancy import with_tenant
from tests.support.bank import account_repository
from tests.support.edge import pb

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # histogram: how many recorded
                        out[metric.name] = out.get(metric.name, 0) + value
        return out


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    for hook in instrumentation.installed():
        if isinstance(hook, OtelHook):
            instrumentation.uninstall(hook)


def test_a_command_is_a_server_span_with_load_append_and_snapshot_children(
    tmp_path: Path, telemetry: Telemetry
) -> None:
    with SQLiteEventStore(tmp_path / "o.db") as store:
        repo = account_repository(store, snapshot_strategy=EveryNEvents(1))

        def handler(message: Any, ctx: RequestContext) -> Any:
            result = repo.retry_on_conflict(
                message.account_id, lambda a: a.open("Ann"), command_id=ctx.command_id
            )
            return pb.Opened(account_id=message.account_id, version=result.version)

        router = Router([otel_middleware(telemetry.tracer_provider, telemetry.meter_provider)])
        router.register(Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, handler))
        reply = asyncio.run(
            router.dispatch(
                "edge.v1.Accounts.Open",
                pb.Open(account_id="acc-1"),
                {"traceparent": PARENT, "Es-Command-Id": "c-1"},
            )
        )
        router.close()
        assert reply.success
    spans = {s.name: s for s in telemetry.spans.get_finished_spans()}
    server = spans["edge.v1.Accounts/Open"]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.attributes["eventstore.command_id"] == "c-1"
    assert server.attributes["eventstore.outcome"] == "ok"
    append = spans["eventstore.append"]
    assert append.parent.span_id == server.context.span_id
    assert append.attributes["eventstore.aggregate_id"] == "acc-1"
    assert append.attributes["eventstore.event_count"] == 1
    assert spans["eventstore.snapshot"].parent.span_id == server.context.span_id
    load = spans["eventstore.load"]
    assert load.attributes["eventstore.aggregate_id"] == "acc-1"
    # Not found is the load's answer for a new account, not an error of the request.
    assert load.status.status_code != StatusCode.ERROR
    assert [e.name for e in load.events] == ["aggregate not found"]
    counted = telemetry.metrics()
    assert counted["eventstore.commands.handled"] == 1
    assert counted["eventstore.events.appended"] == 1
    assert counted["eventstore.command.duration"] == 1
    assert "eventstore.commands.failed" not in counted


def test_a_failed_command_is_an_error_span_and_counted_failed(telemetry: Telemetry) -> None:
    def handler(message: Any, ctx: RequestContext) -> Any:
        raise RuntimeError("boom")

    router = Router(
        [otel_middleware(telemetry.tracer_provider, telemetry.meter_provider)], handler_threads=0
    )
    router.register(Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, handler))
    reply = asyncio.run(
        router.dispatch("edge.v1.Accounts.Open", pb.Open(), principal=Principal("ann"))
    )
    assert reply.error is not None and reply.error.code == "INTERNAL"
    (span,) = telemetry.spans.get_finished_spans()
    assert span.attributes["eventstore.outcome"] == "INTERNAL"
    assert span.attributes["enduser.id"] == "ann"
    assert telemetry.metrics()["eventstore.commands.failed"] == 1


def test_snapshot_hits_and_misses_and_projection_batches_are_recorded(
    tmp_path: Path, telemetry: Telemetry
) -> None:
    from eventstore.core.projections import ProjectionManager

    otel_middleware(telemetry.tracer_provider, telemetry.meter_provider)
    with SQLiteEventStore(tmp_path / "o.db") as store:
        repo = account_repository(store, snapshot_strategy=EveryNEvents(2))
        account = repo.factory("acc-1")
        account.open("Ann")
        account.deposit(1)
        repo.save(account)
        repo.load("acc-1")  # hit
        seen: list[int] = []

        class Count:
            name = "count"

            def reset(self, ctx: Any) -> None:
                seen.clear()

            def handle(self, event: Any, ctx: Any) -> None:
                seen.append(event.position)

        manager = ProjectionManager(store)
        manager.register(Count())
        manager.catch_up()
        assert seen == [1, 2]
    counted = telemetry.metrics()
    assert counted["eventstore.snapshots.hits"] == 1
    assert counted["eventstore.projection.events_handled"] == 2
    assert counted["eventstore.projection.lag"] == 0
    names = [s.name for s in telemetry.spans.get_finished_spans()]
    assert "eventstore.projection_batch" in names


def test_the_trace_context_is_injected_into_outgoing_headers(telemetry: Telemetry) -> None:
    otel_middleware(telemetry.tracer_provider, telemetry.meter_provider)
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("client") as span:
        headers = instrumentation.inject({})
    assert headers["traceparent"].split("-")[1] == format(span.get_span_context().trace_id, "032x")


def test_a_tenant_scoped_repository_still_reports_plain_ids(
    tmp_path: Path, telemetry: Telemetry
) -> None:
    otel_middleware(telemetry.tracer_provider, telemetry.meter_provider)
    with SQLiteEventStore(tmp_path / "o.db") as store, with_tenant("acme"):
        repo = account_repository(store, tenant_isolation=True)
        account = repo.factory("acc-1")
        account.open("Ann")
        repo.save(account)
    (append,) = telemetry.spans.get_finished_spans()
    assert append.attributes["eventstore.aggregate_id"] == "acc-1"


def test_the_trace_continues_from_a_connect_transport_client_into_the_server(
    telemetry: Telemetry,
) -> None:
    import httpx

    from eventstore.rpc import ConnectApp, ConnectTransport

    def handler(message: Any, ctx: RequestContext) -> Any:
        return pb.Opened(account_id=message.account_id)

    app = ConnectApp(
        Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, handler),
        allow_anonymous=True,
        middlewares=[otel_middleware(telemetry.tracer_provider, telemetry.meter_provider)],
    )
    tracer = telemetry.tracer_provider.get_tracer("client")

    async def call() -> Any:
        asgi = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))  # type: ignore[arg-type]
        client = ConnectTransport("http://edge", client=asgi)
        with tracer.start_as_current_span("client call") as span:
            reply = await client.request("edge.v1.Accounts.Open", pb.Open(account_id="a"), {})
        await asgi.aclose()
        return span, reply

    client_span, reply = asyncio.run(call())
    app.router.close()
    assert reply.success
    server = next(
        s for s in telemetry.spans.get_finished_spans() if s.name == "edge.v1.Accounts/Open"
    )
    assert server.context.trace_id == client_span.get_span_context().trace_id
    assert server.parent.span_id == client_span.get_span_context().span_id


def test_a_load_that_finds_no_aggregate_still_names_the_aggregate_type(
    tmp_path: Path, telemetry: Telemetry
) -> None:
    from eventstore import AggregateNotFoundError

    otel_middleware(telemetry.tracer_provider, telemetry.meter_provider)
    with SQLiteEventStore(tmp_path / "o.db") as store:
        repo = account_repository(store)
        with pytest.raises(AggregateNotFoundError):
            repo.load("acc-404")
        account = repo.factory("acc-1")
        account.open("Ann")
        repo.save(account)
        repo.load("acc-1")
    missing, append, found = telemetry.spans.get_finished_spans()
    names = (missing.name, append.name, found.name)
    assert names == ("eventstore.load", "eventstore.append", "eventstore.load")
    for span in (missing, append, found):
        assert span.attributes["eventstore.aggregate_type"] == "Account", span.name
    assert missing.attributes["eventstore.aggregate_id"] == "acc-404"


def refusing_router(telemetry: Telemetry, ran: list[str]) -> Router:
    """A router whose chain is otel, then a middleware and a handler that note they ran."""

    async def noting(message: Any, ctx: RequestContext, call_next: Any) -> Any:
        ran.append("middleware")
        return await call_next(message, ctx)

    def handler(message: Any, ctx: RequestContext) -> Any:
        ran.append("handler")
        return pb.Opened(account_id=message.account_id)

    router = Router(
        [otel_middleware(telemetry.tracer_provider, telemetry.meter_provider), noting],
        handler_threads=0,
        network=True,
    )
    router.register(Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, handler))
    return router


@pytest.mark.parametrize(
    ("subject", "message", "tenant", "code", "recorded_tenant"),
    [
        ("edge.v1.Accounts.Open", pb.Open(), "beta", "TENANT_FORBIDDEN", "beta"),
        ("edge.v1.Accounts.Open", pb.Open(), "../x", "INVALID_TENANT", None),
        ("edge.v1.Accounts.Open", pb.Get(), None, "INVALID_MESSAGE_TYPE", "acme"),
        ("edge.v1.Accounts.Drop", pb.Open(), None, "NO_HANDLER", "acme"),
    ],
)
def test_a_request_the_router_refuses_before_the_chain_is_an_error_server_span(
    telemetry: Telemetry,
    subject: str,
    message: Any,
    tenant: str | None,
    code: str,
    recorded_tenant: str | None,
) -> None:
    ran: list[str] = []
    router = refusing_router(telemetry, ran)
    ann = Principal("ann", tenants=("acme",))
    headers = {"traceparent": PARENT, "Es-Command-Id": "c-9"}
    reply = asyncio.run(router.dispatch(subject, message, headers, principal=ann, tenant=tenant))
    assert reply.error is not None and reply.error.code == code
    assert ran == []  # neither the other middleware nor the handler
    (span,) = telemetry.spans.get_finished_spans()
    assert span.name == span_name(subject)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.status.status_code == StatusCode.ERROR and span.status.description == code
    assert span.attributes["eventstore.outcome"] == code
    assert span.attributes["eventstore.command_id"] == "c-9"
    assert span.attributes["eventstore.subject"] == subject
    assert span.attributes["enduser.id"] == "ann"
    assert span.attributes.get("eventstore.tenant") == recorded_tenant
    counted = telemetry.metrics()
    assert counted["eventstore.commands.handled"] == counted["eventstore.commands.failed"] == 1


def test_a_host_refusal_is_traced_by_the_routers_observers_only(telemetry: Telemetry) -> None:
    from eventstore.core.errors import AuthenticationError

    ran: list[str] = []
    router = refusing_router(telemetry, ran)
    refusal = AuthenticationError("the token has expired")
    reply = asyncio.run(
        router.refuse(
            "edge.v1.Accounts.Open",
            refusal,
            {"Es-Command-Id": "c-7", "Es-Principal-Id": "root"},
            tenant="acme",
        )
    )
    assert reply.error is refusal and ran == []
    (span,) = telemetry.spans.get_finished_spans()
    assert span.status.description == "UNAUTHENTICATED"
    assert span.attributes["eventstore.outcome"] == "UNAUTHENTICATED"
    assert span.attributes["eventstore.command_id"] == "c-7"
    assert span.attributes["eventstore.tenant"] == "acme"  # asked for, not granted
    assert "enduser.id" not in span.attributes  # a forged principal header is no principal
