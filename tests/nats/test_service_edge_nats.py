"""The security table over NATS: each row a request to a NatsServiceHost, then the store is read.

The host serves the edge test service (tests/support/edge.py: tenants ``acme``
and ``beta`` sharing one store, RS256 JWTs) on the session's nats-server.
Rows that are HTTP's only (content types, JSON, body limits) are in
tests/integration/test_service_edge_http.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore.auth import jwt_authenticator
from eventstore.core.responses import Response
from eventstore.middleware import default_middlewares
from eventstore.nats import EmbeddedNATS, NatsServiceHost, NatsTransport
from eventstore.sqlite import SQLiteEventStore
from tests.support.edge import (
    AUDIENCE,
    ISSUER,
    RULES,
    Accounts,
    hs256_token_signed_with_the_public_key,
    pb,
    public_pem,
    token,
    unsigned_token,
)

OPEN = "edge.v1.Accounts.Open"


class Host:
    def __init__(self, url: str, store: SQLiteEventStore) -> None:
        self.url = url
        self.store = store

    def request(
        self,
        subject: str,
        message: Any,
        *,
        bearer: str | None = "default",
        headers: dict[str, str] | None = None,
        middlewares: Any = None,
    ) -> Response:
        sent = dict(headers or {})
        if bearer == "default":
            bearer = token()
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"

        async def go() -> Response:
            host = NatsServiceHost(
                self.url,
                Accounts(self.store),
                authenticate=jwt_authenticator(audience=AUDIENCE, issuer=ISSUER, key=public_pem()),
                middlewares=middlewares
                if middlewares is not None
                else default_middlewares(network=True, rules=RULES),
            )
            async with host, NatsTransport(self.url, headers=sent) as transport:
                reply = await transport.request(subject, message)
            host.router.close()
            return reply

        return asyncio.run(go())

    def code(self, *args: Any, **kwargs: Any) -> str:
        reply = self.request(*args, **kwargs)
        return "ok" if reply.success else (reply.error.code if reply.error else "?")

    def stored_ids(self) -> list[str]:
        return sorted({e.aggregate_id for e in self.store.read_all(0)})


@pytest.fixture
def host(nats_server: EmbeddedNATS, tmp_path: Path) -> Iterator[Host]:
    with SQLiteEventStore(tmp_path / "edge.db") as store:
        yield Host(nats_server.url, store)


def opening(account: str = "acc-1", owner: str = "Ann") -> Any:
    return pb.Open(account_id=account, owner=owner, initial=10)


def test_a_forged_principal_header_is_dropped_and_the_tokens_principal_recorded(
    host: Host,
) -> None:
    assert host.code(OPEN, opening(), headers={"Es-Principal-Id": "root"}) == "ok"
    (event,) = host.store.load_stream("acme::acc-1")
    assert (event.metadata.principal_id, event.metadata.tenant_id) == ("ann", "acme")


def test_a_forged_tenant_header_is_forbidden_and_writes_nothing(host: Host) -> None:
    assert host.code(OPEN, opening(), headers={"Es-Tenant-Id": "beta"}) == "TENANT_FORBIDDEN"
    assert host.store.head_position() == 0


@pytest.mark.parametrize(
    "bearer",
    [
        pytest.param(None, id="no-token"),
        pytest.param("not.a.token", id="garbage"),
        pytest.param(unsigned_token(), id="alg-none"),
        pytest.param(token(exp_in=-3600), id="expired"),
        pytest.param(token(aud="other-api"), id="wrong-audience"),
        pytest.param(hs256_token_signed_with_the_public_key(), id="hs256-with-rsa-pub"),
    ],
)
def test_missing_or_bad_credentials_are_unauthenticated(host: Host, bearer: str | None) -> None:
    assert host.code(OPEN, opening(), bearer=bearer) == "UNAUTHENTICATED"
    assert host.store.head_position() == 0


def test_a_principal_without_the_role_is_permission_denied(host: Host) -> None:
    assert host.code(OPEN, opening(), bearer=token(roles=("auditor",))) == "PERMISSION_DENIED"
    assert host.store.head_position() == 0


def test_tenant_isolation_holds_over_nats(host: Host) -> None:
    assert host.code(OPEN, opening("acc-1", "Ann")) == "ok"
    beta = token("bob", tenants=("beta",))
    assert host.code(OPEN, opening("acme::acc-1"), bearer=beta) == "TENANT_MISMATCH"
    assert host.code("edge.v1.Accounts.Get", pb.Get(account_id="acc-1"), bearer=beta) == (
        "NOT_FOUND"
    )
    assert host.code(OPEN, opening(), headers={"Es-Tenant-Id": "../x"}) == "INVALID_TENANT"
    assert host.code(OPEN, opening("acc-9", "Ann"), bearer=beta) == "ok"  # unique per tenant
    assert host.stored_ids() == ["acme::acc-1", "beta::acc-9"]


def test_an_unknown_method_of_the_service_is_no_handler_and_writes_nothing(host: Host) -> None:
    assert host.code("edge.v1.Accounts.DropTables", opening()) == "NO_HANDLER"
    assert host.store.head_position() == 0


def test_a_command_id_reused_by_another_tenant_is_a_new_command_over_nats(host: Host) -> None:
    same = {"Es-Command-Id": "cmd-1"}
    assert host.code(OPEN, opening("acc-1"), headers=same) == "ok"
    beta = token("bob", tenants=("beta",))
    reply = host.request(OPEN, opening("acc-2"), headers=same, bearer=beta)
    assert reply.unwrap(pb.Opened).account_id == "acc-2"
    assert host.stored_ids() == ["acme::acc-1", "beta::acc-2"]


@pytest.mark.parametrize("subject", [OPEN, "edge.v1.Accounts.OpenInUnit"])
def test_a_unique_conflict_names_the_clients_value_and_no_owner_over_nats(
    host: Host, subject: str
) -> None:
    assert host.code(OPEN, opening("acc-1", "Ann")) == "ok"
    beta = token("bob", tenants=("beta",))
    assert host.code(subject, opening("acc-9", "Ann"), bearer=beta) == "ok"
    taken = host.request(subject, opening("acc-2", "Ann"))
    assert taken.error is not None and taken.error.code == "UNIQUE_CONSTRAINT"
    assert dict(taken.error.details) == {"index": "account_owner", "value": "Ann"}
    assert "acc-1" not in taken.error.message and "acme" not in taken.error.message
    assert host.stored_ids() == ["acme::acc-1", "beta::acc-9"]


def test_the_log_and_a_projection_query_hold_only_the_tenants_own_over_nats(host: Host) -> None:
    assert host.code(OPEN, opening("acc-1", "Ann")) == "ok"
    beta = token("bob", tenants=("beta",))
    assert host.code(OPEN, opening("acc-2", "Bob"), bearer=beta) == "ok"
    log = host.request("edge.v1.Accounts.ReadLog", pb.ReadLog(), bearer=beta).unwrap(pb.Log)
    assert [(e.position, e.account_id) for e in log.entries] == [(2, "acc-2")]
    listed = host.request("edge.v1.Accounts.List", pb.ListAccounts(), bearer=beta)
    assert [a.owner for a in listed.unwrap(pb.AccountList).accounts] == ["Bob"]
    assert host.stored_ids() == ["acme::acc-1", "beta::acc-2"]


def test_a_validation_violation_and_a_handler_exception_over_nats(host: Host) -> None:
    assert host.code(OPEN, opening()) == "ok"
    deposit = host.request("edge.v1.Accounts.Deposit", pb.Deposit(account_id="acc-1"))
    assert deposit.error is not None and deposit.error.code == "VALIDATION_FAILED"
    assert deposit.error.details["field.amount"] == "gt"
    for chain in (None, ()):  # with recovery_middleware, and the router's own fallback
        crash = host.request("edge.v1.Accounts.Explode", opening(), middlewares=chain)
        assert crash.error is not None and crash.error.code == "INTERNAL"
        assert "hunter2" not in crash.error.message and crash.error.details["error_id"]
    assert host.store.head_position() == 1


def test_a_host_needs_an_authenticator_or_allow_anonymous(nats_server: EmbeddedNATS) -> None:
    with pytest.raises(ValueError, match="allow_anonymous"):
        NatsServiceHost(nats_server.url)


def test_the_trace_context_crosses_nats(host: Host) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from eventstore.core import instrumentation
    from eventstore.otel import OtelHook, otel_middleware

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    chain = [otel_middleware(provider), *default_middlewares(network=True, rules=RULES)]
    tracer = provider.get_tracer("client")
    try:
        with tracer.start_as_current_span("client") as client:
            assert host.code(OPEN, opening(), middlewares=chain) == "ok"
    finally:
        for hook in instrumentation.installed():
            if isinstance(hook, OtelHook):
                instrumentation.uninstall(hook)
    server = next(s for s in spans.get_finished_spans() if s.name == "edge.v1.Accounts/Open")
    assert server.context.trace_id == client.get_span_context().trace_id
    assert server.parent.span_id == client.get_span_context().span_id


def test_the_relay_reports_publish_spans_and_its_lag(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from eventstore.core import instrumentation
    from eventstore.nats import NatsEventBus, Relay
    from eventstore.otel import OtelHook, otel_middleware
    from tests.support.bank import account_repository

    spans = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    otel_middleware(tracer, MeterProvider(metric_readers=[reader]))

    async def scenario(store: SQLiteEventStore) -> int:
        async with NatsEventBus(
            nats_server.url, stream="T_EDGE_OTEL", subject_prefix="tedgeotel", store=store
        ) as bus:
            return await Relay(store, bus).publish_pending()

    try:
        with SQLiteEventStore(tmp_path / "r.db") as store:
            repo = account_repository(store)
            account = repo.factory("acc-1")
            account.open("Ann")
            account.deposit(2)
            repo.save(account)
            assert asyncio.run(scenario(store)) == 2
    finally:
        for hook in instrumentation.installed():
            if isinstance(hook, OtelHook):
                instrumentation.uninstall(hook)
    (publish,) = [s for s in spans.get_finished_spans() if s.name == "eventstore.publish"]
    assert publish.attributes["eventstore.event_count"] == 2
    data = reader.get_metrics_data()
    lag = [
        point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "eventstore.relay.lag"
        for point in metric.data.data_points
    ]
    assert lag == [0]


def test_a_store_per_tenant_is_relayed_to_a_stream_and_subject_prefix_per_tenant(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    from eventstore.nats import NatsEventBus, Relay
    from eventstore.tenancy import TenantStores
    from tests.support.bank import account_repository

    async def relay_all(stores: TenantStores) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for tenant in ("acme", "beta"):
            store = stores.for_tenant(tenant)
            async with NatsEventBus(
                nats_server.url,
                stream=f"T_EDGETEN_{tenant.upper()}",
                subject_prefix=f"tedgeten.{tenant}",
                store=store,
            ) as bus:
                await Relay(store, bus).publish_pending()
                events = await asyncio.to_thread(bus.read_all, 0)
                seen[tenant] = [f"{e.position}:{e.aggregate_id}" for e in events]
        return seen

    with TenantStores(tmp_path / "tenants") as stores:
        for tenant, count in (("acme", 2), ("beta", 1)):
            repo = account_repository(stores.for_tenant(tenant))
            for i in range(count):
                account = repo.factory(f"{tenant}-{i}")
                account.open(tenant)
                repo.save(account)
        seen = asyncio.run(relay_all(stores))
    assert seen == {"acme": ["1:acme-0", "2:acme-1"], "beta": ["1:beta-0"]}


# -- refusals before the chain are logged and traced like any other request -----------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("subject", "data", "sent", "code", "principal", "tenant"),
    [
        pytest.param(OPEN, None, {"bearer": None}, "UNAUTHENTICATED", "", "", id="no-token"),
        pytest.param(
            OPEN, None, {"bearer": "forged"}, "UNAUTHENTICATED", "", "", id="hs256-with-rsa-pub"
        ),
        pytest.param(
            OPEN,
            None,
            {"Es-Tenant-Id": "beta"},
            "TENANT_FORBIDDEN",
            "ann",
            "beta",
            id="forged-tenant",
        ),
        pytest.param(
            OPEN, b"\xff\xff\xff", {}, "INVALID_REQUEST", "", "", id="bytes-that-are-no-request"
        ),
        pytest.param(
            OPEN,
            None,
            {"Es-Message-Type": "edge.v1.Get"},
            "INVALID_MESSAGE_TYPE",
            "",
            "",
            id="another-message-type",
        ),
        pytest.param(
            "edge.v1.Accounts.DropTables", None, {}, "NO_HANDLER", "", "", id="unknown-method"
        ),
    ],
)
def test_a_request_refused_before_the_chain_is_logged_and_traced_over_nats(
    host: Host,
    caplog: pytest.LogCaptureFixture,
    subject: str,
    data: bytes | None,
    sent: dict[str, Any],
    code: str,
    principal: str,
    tenant: str,
) -> None:
    import nats
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from eventstore.core import instrumentation
    from eventstore.otel import OtelHook, otel_middleware
    from eventstore.proto.eventsourcing import response_pb2

    caplog.set_level(logging.INFO, "eventstore.requests")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    chain = [otel_middleware(provider), *default_middlewares(network=True, rules=RULES)]
    headers = {"Es-Command-Id": "cmd-7", "traceparent": TRACEPARENT}
    headers.update({k: v for k, v in sent.items() if k != "bearer"})
    bearer = sent.get("bearer", token())
    if bearer == "forged":
        bearer = hs256_token_signed_with_the_public_key()
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    payload = opening().SerializeToString() if data is None else data

    async def go() -> Response:
        served = NatsServiceHost(
            host.url,
            Accounts(host.store),
            authenticate=jwt_authenticator(audience=AUDIENCE, issuer=ISSUER, key=public_pem()),
            middlewares=chain,
        )
        async with served:
            client = await nats.connect(host.url)
            try:
                msg = await client.request(subject, payload, timeout=5, headers=headers)
            finally:
                await client.close()
        served.router.close()
        return Response.from_proto(response_pb2.Response.FromString(msg.data))

    try:
        reply = asyncio.run(go())
    finally:
        for hook in instrumentation.installed():
            if isinstance(hook, OtelHook):
                instrumentation.uninstall(hook)
    assert reply.error is not None and reply.error.code == code
    assert host.store.head_position() == 0
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    fields = {k: getattr(record, k) for k in ("subject", "command_id", "principal", "tenant")}
    assert fields == {
        "subject": subject,
        "command_id": "cmd-7",
        "principal": principal,
        "tenant": tenant,
    }
    assert (record.outcome, record.levelno) == (code, logging.WARNING)
    (span,) = spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.status.status_code == StatusCode.ERROR and span.status.description == code
    assert span.attributes["eventstore.outcome"] == code
    assert span.attributes["eventstore.subject"] == subject
    assert span.attributes["eventstore.command_id"] == "cmd-7"
    assert span.attributes.get("enduser.id", "") == principal
    assert span.attributes.get("eventstore.tenant", "") == tenant


# The metadata the HTTP parity test sends: keys NATS headers cannot carry as they are (a
# space, '/', '='), values with a line break or blanks nats-py would trim.
AWKWARD_METADATA = {
    "OrderRef": "X-7",
    "note": "café ☕",
    "a key/with=&%": "a value&with=%20 and\nnewline",
    "padded": "  both ends  ",
}


def test_custom_metadata_nats_headers_cannot_carry_is_stored_as_sent(host: Host) -> None:
    # nats-py refused the key with a raw BadHeaderError, and trimmed values and turned
    # line breaks into spaces: the same request stored other metadata than in process.
    from eventstore.core.headers import metadata_headers

    reply = host.request(OPEN, opening(), headers=metadata_headers(AWKWARD_METADATA))
    assert reply.success, reply.error
    (event,) = host.store.read_all()
    assert dict(event.metadata.custom) == AWKWARD_METADATA


def test_plain_custom_metadata_still_travels_as_one_header_each(host: Host) -> None:
    from eventstore.nats.transport import _nats_headers

    plain = {"Es-Meta-OrderRef": "X-7", "Es-Meta-note": "café"}
    assert _nats_headers(dict(plain)) == plain  # the wire of older hosts, unchanged
    reply = host.request(OPEN, opening(), headers=plain)
    assert reply.success, reply.error
    (event,) = host.store.read_all()
    assert dict(event.metadata.custom) == {"OrderRef": "X-7", "note": "café"}


def test_a_malformed_packed_metadata_header_is_invalid_request(host: Host) -> None:
    reply = host.request(OPEN, opening(), headers={"Es-Metadata": "a=%zz"})
    assert not reply.success and reply.error is not None
    assert reply.error.code == "INVALID_REQUEST"
    assert reply.error.details["header"] == "Es-Metadata"
    assert host.store.read_all() == []
