"""The security table over HTTP: each row a request, checked by reading the store afterwards.

The ConnectApp runs in process through httpx's ASGI transport (one test also
on a real uvicorn server on 127.0.0.1). Tenants ``acme`` and ``beta`` share
one SQLite store through a tenant-isolated repository.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventstore import AppError
from eventstore.rpc import ConnectApp, ConnectTransport, serve_http
from eventstore.sqlite import SQLiteEventStore
from tests.support.edge import (
    hs256_token_signed_with_the_public_key,
    make_app,
    pb,
    token,
    unsigned_token,
)

OPEN = "/edge.v1.Accounts/Open"
DEPOSIT = "/edge.v1.Accounts/Deposit"
GET = "/edge.v1.Accounts/Get"
OPEN_IN_UNIT = "/edge.v1.Accounts/OpenInUnit"
READ_LOG = "/edge.v1.Accounts/ReadLog"
LIST = "/edge.v1.Accounts/List"


class Edge:
    def __init__(self, store: SQLiteEventStore, app: ConnectApp) -> None:
        self.store = store
        self.app = app

    def post(
        self,
        path: str,
        body: Any,
        *,
        bearer: str | None = "default",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": content_type, **(headers or {})}
        if bearer == "default":
            bearer = token()
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        content = json.dumps(body).encode() if isinstance(body, dict) else body

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
                return await client.post(path, content=content, headers=sent)

        return asyncio.run(go())

    def written(self) -> int:
        return self.store.head_position()

    def stored_ids(self) -> list[str]:
        return sorted({e.aggregate_id for e in self.store.read_all(0)})


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    with SQLiteEventStore(tmp_path / "edge.db") as store:
        app = make_app(store)
        yield Edge(store, app)
        app.router.close()


def error_of(reply: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """(connect code, AppError code, AppError details) of an error reply."""
    from eventstore.proto.eventsourcing import response_pb2

    body = reply.json()
    for detail in body.get("details", []):
        if detail["type"] == "eventsourcing.AppError":
            raw = base64.b64decode(detail["value"] + "==")
            e = response_pb2.AppError.FromString(raw)
            return body["code"], e.code, dict(e.details)
    return body.get("code", ""), "", {}


def open_body(account: str = "acc-1", owner: str = "Ann") -> dict[str, Any]:
    return {"accountId": account, "owner": owner, "initial": 10}


def test_an_authenticated_open_is_stored_under_the_tenant_with_the_tokens_principal(
    edge: Edge,
) -> None:
    reply = edge.post(OPEN, open_body())
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"accountId": "acc-1", "version": "1"}
    (event,) = edge.store.load_stream("acme::acc-1")
    assert (event.metadata.principal_id, event.metadata.tenant_id) == ("ann", "acme")


def test_binary_proto_requests_are_served(edge: Edge) -> None:
    body = pb.Open(account_id="acc-1", owner="Ann").SerializeToString()
    reply = edge.post(OPEN, body, content_type="application/proto")
    assert reply.status_code == 200
    assert pb.Opened.FromString(reply.content).version == 1


# -- the security table: nothing is written for any of these ------------------------------


def test_malformed_json_is_invalid_argument_and_writes_nothing(edge: Edge) -> None:
    reply = edge.post(OPEN, b'{"accountId": ')
    assert (reply.status_code, reply.json()["code"]) == (400, "invalid_argument")
    assert edge.written() == 0


def test_an_unknown_json_field_is_refused_and_writes_nothing(edge: Edge) -> None:
    reply = edge.post(OPEN, {**open_body(), "isAdmin": True})
    assert (reply.status_code, reply.json()["code"]) == (400, "invalid_argument")
    assert edge.written() == 0


def test_a_wrong_content_type_is_415_and_writes_nothing(edge: Edge) -> None:
    reply = edge.post(OPEN, json.dumps(open_body()).encode(), content_type="text/plain")
    assert reply.status_code == 415
    assert edge.written() == 0


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc-web+proto"])
def test_grpc_and_grpc_web_are_refused_and_write_nothing(edge: Edge, content_type: str) -> None:
    body = pb.Open(account_id="acc-1", owner="Ann").SerializeToString()
    framed = b"\x00" + len(body).to_bytes(4, "big") + body
    reply = edge.post(OPEN, framed, content_type=content_type)
    assert reply.status_code == 415
    assert edge.written() == 0


def test_a_body_over_the_limit_is_resource_exhausted_and_writes_nothing(edge: Edge) -> None:
    reply = edge.post(OPEN, open_body(owner="x" * 5000), headers={"Es-Command-Id": "cmd-big"})
    assert (reply.status_code, reply.json()["code"]) == (429, "resource_exhausted")
    _, code, details = error_of(reply)
    assert code == "REQUEST_TOO_LARGE"
    assert (details["command_id"], details["limit"]) == ("cmd-big", "4096")
    assert int(details["size"]) > 4096
    assert edge.written() == 0


def test_a_chunked_body_over_the_limit_is_not_called_decompressed(edge: Edge) -> None:
    # With no Content-Length the size is known only as the body is read; the message
    # said "(decompressed)" though nothing was compressed.
    big = json.dumps(open_body(owner="x" * 5000)).encode()

    async def chunks() -> Any:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    reply = edge.post(OPEN, chunks())
    _, code, details = error_of(reply)
    message = reply.json()["message"]
    assert (reply.status_code, code) == (429, "REQUEST_TOO_LARGE")
    assert "more than 4096 bytes" in message and "decompressed" not in message
    assert "size" not in details and edge.written() == 0


def test_an_unknown_method_is_404_and_writes_nothing(edge: Edge) -> None:
    reply = edge.post("/edge.v1.Accounts/DropTables", open_body())
    assert reply.status_code == 404
    assert error_of(reply)[:2] == ("unimplemented", "NO_HANDLER")
    assert edge.written() == 0


def test_a_message_type_header_naming_another_type_is_refused_and_writes_nothing(
    edge: Edge,
) -> None:
    reply = edge.post(OPEN, open_body(), headers={"Es-Message-Type": "edge.v1.Get"})
    connect, code, details = error_of(reply)
    assert (reply.status_code, connect, code) == (400, "invalid_argument", "INVALID_MESSAGE_TYPE")
    assert details == {
        "subject": "edge.v1.Accounts.Open",
        "expected": "edge.v1.Open",
        "actual": "edge.v1.Get",
    }
    assert edge.written() == 0
    named = edge.post(OPEN, open_body(), headers={"Es-Message-Type": "edge.v1.Open"})
    assert named.status_code == 200, named.text


def test_forged_principal_header_is_ignored_the_tokens_principal_is_recorded(edge: Edge) -> None:
    reply = edge.post(OPEN, open_body(), headers={"Es-Principal-Id": "root"})
    assert reply.status_code == 200
    (event,) = edge.store.load_stream("acme::acc-1")
    assert event.metadata.principal_id == "ann"


def test_forged_tenant_header_for_a_tenant_not_in_the_token_is_forbidden(edge: Edge) -> None:
    reply = edge.post(OPEN, open_body(), headers={"Es-Tenant-Id": "beta"})
    assert (reply.status_code, error_of(reply)[1]) == (403, "TENANT_FORBIDDEN")
    assert edge.written() == 0


def test_no_token_is_unauthenticated_and_writes_nothing(edge: Edge) -> None:
    reply = edge.post(OPEN, open_body(), bearer=None)
    assert (reply.status_code, error_of(reply)[1]) == (401, "UNAUTHENTICATED")
    assert edge.written() == 0


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: "not.a.token", id="garbage"),
        pytest.param(lambda: token(exp_in=-3600), id="expired"),
        pytest.param(lambda: unsigned_token(), id="alg-none"),
        pytest.param(hs256_token_signed_with_the_public_key, id="hs256-with-rsa-pub"),
        pytest.param(lambda: token(aud="other-api"), id="wrong-audience"),
        pytest.param(lambda: token(iss="https://evil.test"), id="wrong-issuer"),
    ],
)
def test_a_bad_token_is_unauthenticated_and_writes_nothing(edge: Edge, bad: Any) -> None:
    bearer = bad()
    reply = edge.post(OPEN, open_body(), bearer=bearer)
    assert (reply.status_code, error_of(reply)[1]) == (401, "UNAUTHENTICATED")
    assert "hunter" not in reply.text
    assert edge.written() == 0


def test_a_principal_without_the_role_is_permission_denied(edge: Edge) -> None:
    reply = edge.post(OPEN, open_body(), bearer=token(roles=("auditor",)))
    assert (reply.status_code, error_of(reply)[1]) == (403, "PERMISSION_DENIED")
    assert edge.written() == 0


def test_another_tenants_aggregate_id_is_not_reachable(edge: Edge) -> None:
    assert edge.post(OPEN, open_body()).status_code == 200
    beta = token("bob", tenants=("beta",))
    reply = edge.post(DEPOSIT, {"accountId": "acc-1", "amount": 5}, bearer=beta)
    assert error_of(reply)[1] == "ACCOUNT_NOT_FOUND"
    reply = edge.post(DEPOSIT, {"accountId": "acme::acc-1", "amount": 5}, bearer=beta)
    assert (reply.status_code, error_of(reply)[1]) == (403, "TENANT_MISMATCH")
    assert edge.stored_ids() == ["acme::acc-1"]
    assert edge.written() == 1


def test_a_client_id_containing_the_separator_is_tenant_mismatch(edge: Edge) -> None:
    reply = edge.post(OPEN, open_body("x::acc-1"))
    assert (reply.status_code, error_of(reply)[1]) == (403, "TENANT_MISMATCH")
    assert edge.written() == 0


def test_a_tenant_id_with_a_path_is_invalid_tenant(edge: Edge) -> None:
    reply = edge.post(OPEN, open_body(), headers={"Es-Tenant-Id": "../x"})
    assert (reply.status_code, error_of(reply)[1]) == (400, "INVALID_TENANT")
    assert edge.written() == 0


def test_a_unique_value_of_another_tenant_is_neither_revealed_nor_blocking(edge: Edge) -> None:
    assert edge.post(OPEN, open_body("acc-1", owner="Ann")).status_code == 200
    beta = token("bob", tenants=("beta",))
    assert edge.post(OPEN, open_body("acc-9", owner="Ann"), bearer=beta).status_code == 200
    taken = edge.post(OPEN, open_body("acc-2", owner="Ann"))
    connect, code, details = error_of(taken)
    assert (connect, code) == ("already_exists", "UNIQUE_CONSTRAINT")
    assert "acc-1" not in taken.text and "owner" not in details and "acme" not in details["value"]
    assert edge.stored_ids() == ["acme::acc-1", "beta::acc-9"]


def test_a_command_id_reused_by_another_tenant_is_a_new_command(edge: Edge) -> None:
    same = {"Es-Command-Id": "cmd-1"}
    assert edge.post(OPEN, open_body("acc-1"), headers=same).status_code == 200
    beta = token("bob", tenants=("beta",))
    reply = edge.post(OPEN, open_body("acc-2"), headers=same, bearer=beta)
    assert reply.status_code == 200, reply.text
    assert edge.stored_ids() == ["acme::acc-1", "beta::acc-2"]


def test_a_query_for_another_tenants_aggregate_finds_nothing(edge: Edge) -> None:
    assert edge.post(OPEN, open_body("acc-1")).status_code == 200
    beta = token("bob", tenants=("beta",))
    reply = edge.post(GET, {"accountId": "acc-1"}, bearer=beta)
    assert (reply.status_code, error_of(reply)[1]) == (404, "NOT_FOUND")
    assert "Ann" not in reply.text
    assert edge.post(GET, {"accountId": "acc-1"}).json()["owner"] == "Ann"
    assert edge.stored_ids() == ["acme::acc-1"] and edge.written() == 1


def test_a_unique_value_claimed_in_a_unit_shows_the_clients_value_and_no_owner(
    edge: Edge,
) -> None:
    assert edge.post(OPEN, open_body("acc-1", owner="Ann")).status_code == 200
    beta = token("bob", tenants=("beta",))
    assert edge.post(OPEN_IN_UNIT, open_body("acc-9", owner="Ann"), bearer=beta).status_code == 200
    taken = edge.post(OPEN_IN_UNIT, open_body("acc-2", owner="Ann"))
    connect, code, details = error_of(taken)
    assert (connect, code) == ("already_exists", "UNIQUE_CONSTRAINT")
    assert details == {"index": "account_owner", "value": "Ann"}
    assert "acc-1" not in taken.text and "acme" not in taken.text
    assert edge.stored_ids() == ["acme::acc-1", "beta::acc-9"] and edge.written() == 2


def test_a_tenants_read_of_the_log_holds_only_its_own_events(edge: Edge) -> None:
    assert edge.post(OPEN, open_body("acc-1", owner="Ann")).status_code == 200
    beta = token("bob", tenants=("beta",))
    for account in ("acc-1", "acc-2"):
        assert edge.post(OPEN, open_body(account, owner=f"Bob {account}"), bearer=beta).is_success
    log = edge.post(READ_LOG, {"after": 0}, bearer=beta)
    assert log.status_code == 200, log.text
    entries = [(e["position"], e["accountId"]) for e in log.json()["entries"]]
    assert entries == [("2", "acc-1"), ("3", "acc-2")]
    mine = edge.post(READ_LOG, {"after": 0}).json()["entries"]
    assert [(e["position"], e["accountId"]) for e in mine] == [("1", "acc-1")]
    assert edge.stored_ids() == ["acme::acc-1", "beta::acc-1", "beta::acc-2"]
    assert edge.written() == 3


def test_a_projection_query_returns_only_the_tenants_rows(edge: Edge) -> None:
    assert edge.post(OPEN, open_body("acc-1", owner="Ann")).status_code == 200
    beta = token("bob", tenants=("beta",))
    assert edge.post(OPEN, open_body("acc-1", owner="Bob"), bearer=beta).status_code == 200
    theirs = edge.post(LIST, {}, bearer=beta)
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["accounts"] == [{"accountId": "acc-1", "owner": "Bob", "balance": "10"}]
    assert "Ann" not in theirs.text
    assert [a["owner"] for a in edge.post(LIST, {}).json()["accounts"]] == ["Ann"]
    assert edge.stored_ids() == ["acme::acc-1", "beta::acc-1"] and edge.written() == 2


def test_a_validation_violation_names_the_field_and_rule_and_writes_nothing(edge: Edge) -> None:
    assert edge.post(OPEN, open_body()).status_code == 200
    reply = edge.post(DEPOSIT, {"accountId": "acc-1", "amount": 0})
    connect, code, details = error_of(reply)
    assert (reply.status_code, connect, code) == (400, "invalid_argument", "VALIDATION_FAILED")
    assert details["field.amount"] == "gt"
    assert edge.written() == 1


def test_a_handler_exception_replies_a_generic_internal_error_with_an_error_id(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    reply = edge.post("/edge.v1.Accounts/Explode", open_body())
    connect, code, details = error_of(reply)
    assert (reply.status_code, connect, code) == (500, "internal", "INTERNAL")
    assert "hunter2" not in reply.text and "/srv" not in reply.text
    assert details["error_id"] in caplog.text and "hunter2" in caplog.text
    assert edge.written() == 0


def test_the_routers_own_internal_fallback_is_generic_without_recovery_middleware(
    tmp_path: Path,
) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        edge = Edge(store, make_app(store, middlewares=()))
        reply = edge.post("/edge.v1.Accounts/Explode", open_body())
        assert error_of(reply)[:2] == ("internal", "INTERNAL")
        assert "hunter2" not in reply.text and "error id" in reply.json()["message"]


def test_a_connect_app_needs_an_authenticator_or_allow_anonymous(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        with pytest.raises(ValueError, match="allow_anonymous"):
            make_app(store, authenticate=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connect_transport_round_trip_on_a_real_uvicorn_server(tmp_path: Path) -> None:
    from eventstore.core.headers import TENANT_ID_HEADER

    async def scenario(store: SQLiteEventStore) -> None:
        server = serve_http(make_app(store), port=free_port())
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.02)
            port = server.servers[0].sockets[0].getsockname()[1]
            client = ConnectTransport(f"http://127.0.0.1:{port}", token=token())
            reply = await client.request(
                "edge.v1.Accounts.Open", pb.Open(account_id="acc-1", owner="Ann"), {}
            )
            assert reply.unwrap(pb.Opened).version == 1
            denied = await client.request(
                "edge.v1.Accounts.Open",
                pb.Open(account_id="acc-2", owner="Bo"),
                {TENANT_ID_HEADER: "beta"},
            )
            with pytest.raises(AppError) as caught:
                denied.unwrap(pb.Opened)
            assert caught.value.code == "TENANT_FORBIDDEN"
            gone = ConnectTransport("http://127.0.0.1:1", timeout=2)
            down = await gone.request("edge.v1.Accounts.Open", pb.Open(account_id="a"), {})
            assert down.error is not None and down.error.code == "UNAVAILABLE"
        finally:
            server.should_exit = True
            await task

    with SQLiteEventStore(tmp_path / "e.db") as store:
        asyncio.run(scenario(store))
        assert [e.aggregate_id for e in store.read_all(0)] == ["acme::acc-1"]


def test_the_multitenant_example_proves_isolation_in_both_strategies() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "examples.multitenant"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("acme sees acc-1: owner Ann, balance 100") == 2
    assert out.count("beta sees acc-1: owner Bob, balance 5") == 2
    assert "beta depositing to 'acme::acc-1': TENANT_MISMATCH" in out
    assert out.count("beta asking to act for acme: TENANT_FORBIDDEN") == 2
    assert "stored ids in shared.db: acme::acc-1, beta::acc-1" in out
    assert "acme's log: 1:acme::acc-1\n" in out and "beta's log: 2:beta::acc-1\n" in out
    assert "stored ids in acme.db: acc-1" in out and "stored ids in beta.db: acc-1" in out


def test_a_business_error_is_failed_precondition_with_code_message_and_solution(
    edge: Edge,
) -> None:
    from eventstore.proto.eventsourcing import response_pb2

    reply = edge.post(DEPOSIT, {"accountId": "acc-404", "amount": 5})
    body = reply.json()
    assert (reply.status_code, body["code"]) == (400, "failed_precondition")
    (detail,) = body["details"]
    error = response_pb2.AppError.FromString(base64.b64decode(detail["value"] + "=="))
    assert error.code == "ACCOUNT_NOT_FOUND" and "acc-404" in error.message
    assert edge.written() == 0


def test_an_anonymous_host_serves_callers_without_credentials_but_in_no_tenant(
    tmp_path: Path,
) -> None:
    from eventstore.auth import api_key_authenticator

    with SQLiteEventStore(tmp_path / "e.db") as store:
        app = make_app(
            store,
            authenticate=api_key_authenticator({}),
            allow_anonymous=True,
            middlewares=(),
        )
        edge = Edge(store, app)
        posing = edge.post(OPEN, open_body(), bearer=None, headers={"Es-Tenant-Id": "acme"})
        assert error_of(posing)[1] == "TENANT_FORBIDDEN"
        reply = edge.post("/edge.v1.Accounts/Explode", open_body(), bearer=None)
        assert error_of(reply)[1] == "INTERNAL"  # the handler ran, anonymously
        assert store.head_position() == 0
        wrong = edge.post(OPEN, open_body("acc-2"), bearer=None, headers={"X-Api-Key": "nope"})
        assert error_of(wrong)[1] == "UNAUTHENTICATED"
        app.router.close()


def test_tenant_stores_open_a_postgresql_schema_per_tenant_from_a_url_template() -> None:
    from eventstore import NewEvent, new_event_id
    from eventstore.tenancy import TenantStores, with_tenant
    from tests.support.bank import account_repository
    from tests.support.postgres import fresh_schema, server_dsn

    dsn = server_dsn()
    if not dsn.startswith("postgres"):
        pytest.fail(f"the test server's DSN is not a URL: {dsn!r}")
    prefix = fresh_schema()
    template = f"{dsn}{'&' if '?' in dsn else '?'}schema={prefix}_{{tenant}}"
    with TenantStores(template) as stores:
        for tenant in ("acme", "beta"):
            with with_tenant(tenant):
                repo = account_repository(stores.for_tenant())
                account = repo.factory("acc-1")
                account.open(tenant)
                repo.save(account)
        acme, beta = stores.for_tenant("acme"), stores.for_tenant("beta")
        assert [e.aggregate_id for e in acme.read_all(0)] == ["acc-1"]
        assert acme.head_position() == beta.head_position() == 1  # a position space each
        assert account_repository(beta).load("acc-1").state.owner == "beta"
        # Tenant ids may hold '-' and be 64 long; schema names may not: each still
        # gets a schema of its own, apart from the id spelled with '_'.
        long_id = "l" + "-x" * 31 + "z"
        for tenant in ("acme-corp", "acme_corp", long_id):
            store = stores.for_tenant(tenant)
            store.append("acc-1", "Account", 0, [NewEvent(new_event_id(), "test.Opened", b"")])
        schemas = {stores.for_tenant(t).schema for t in ("acme-corp", "acme_corp", long_id)}
        assert len(schemas) == 3 and all(len(name) <= 63 for name in schemas)
        assert stores.for_tenant("acme-corp").head_position() == 1


# -- refusals before the chain are logged and traced like any other request -----------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Observed:
    """A ConnectApp whose chain is otel (in-memory SDK exporter) then the network default."""

    def __init__(self, store: SQLiteEventStore) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from eventstore.middleware import default_middlewares
        from eventstore.otel import otel_middleware
        from tests.support.edge import RULES

        self.spans = InMemorySpanExporter()
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        chain = [
            otel_middleware(tracer, MeterProvider(metric_readers=[self.reader])),
            *default_middlewares(network=True, rules=RULES),
        ]
        self.store = store
        self.app = make_app(store, middlewares=chain)

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
                return await client.request(method, path, content=body, headers=headers)

        return asyncio.run(go())

    def failed(self) -> float:
        data = self.reader.get_metrics_data()
        return sum(
            point.value
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "eventstore.commands.failed"
            for point in metric.data.data_points
        )


@pytest.fixture
def observed(tmp_path: Path) -> Iterator[Observed]:
    from eventstore.core import instrumentation
    from eventstore.otel import OtelHook

    with SQLiteEventStore(tmp_path / "edge.db") as store:
        edge = Observed(store)
        yield edge
        edge.app.router.close()
    for hook in instrumentation.installed():
        if isinstance(hook, OtelHook):
            instrumentation.uninstall(hook)


def _grpc_frame() -> bytes:
    body = pb.Open(account_id="acc-1", owner="Ann").SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


_JSON = json.dumps(open_body()).encode()
_OPEN = "edge.v1.Accounts.Open"


@pytest.mark.parametrize(
    ("method", "path", "body", "sent", "code", "principal", "tenant"),
    [
        pytest.param(
            "POST", OPEN, _JSON, {"bearer": None}, "UNAUTHENTICATED", "", "", id="no-token"
        ),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"bearer": "not.a.token"},
            "UNAUTHENTICATED",
            "",
            "",
            id="garbage-token",
        ),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"bearer": "forged"},
            "UNAUTHENTICATED",
            "",
            "",
            id="hs256-with-rsa-pub",
        ),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"Es-Tenant-Id": "beta"},
            "TENANT_FORBIDDEN",
            "ann",
            "beta",
            id="forged-tenant",
        ),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"Es-Tenant-Id": "../x"},
            "INVALID_TENANT",
            "ann",
            "",
            id="tenant-with-a-path",
        ),
        pytest.param(
            "POST", OPEN, b'{"accountId": ', {}, "INVALID_REQUEST", "", "", id="malformed-json"
        ),
        pytest.param(
            "POST", OPEN, b'{"isAdmin": true}', {}, "INVALID_REQUEST", "", "", id="unknown-field"
        ),
        pytest.param("POST", OPEN, b"[]", {}, "INVALID_REQUEST", "", "", id="json-array"),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"Content-Type": "text/plain"},
            "INVALID_REQUEST",
            "",
            "",
            id="content-type",
        ),
        pytest.param(
            "POST",
            OPEN,
            _grpc_frame(),
            {"Content-Type": "application/grpc"},
            "INVALID_REQUEST",
            "",
            "",
            id="grpc",
        ),
        pytest.param(
            "POST",
            OPEN,
            b'{"owner": "' + b"x" * 5000 + b'"}',
            {},
            "REQUEST_TOO_LARGE",
            "",
            "",
            id="body-over-the-limit",
        ),
        pytest.param("GET", OPEN, b"", {}, "INVALID_REQUEST", "", "", id="http-get"),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"Es-Message-Type": "edge.v1.Get"},
            "INVALID_MESSAGE_TYPE",
            "",
            "",
            id="another-message-type",
        ),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"Es-Metadata": "no-equals-sign"},
            "INVALID_REQUEST",
            "",
            "",
            id="malformed-es-metadata",
        ),
        pytest.param(
            "POST",
            OPEN,
            _JSON,
            {"X-Note": "caf\xe9".encode("latin-1")},
            "INVALID_REQUEST",
            "",
            "",
            id="header-not-utf8",
        ),
        pytest.param(
            "POST",
            "/edge.v1.Accounts/DropTables",
            _JSON,
            {},
            "NO_HANDLER",
            "",
            "",
            id="unknown-method",
        ),
    ],
)
def test_a_request_refused_before_the_chain_is_logged_and_traced_and_runs_nothing(
    observed: Observed,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: bytes,
    sent: dict[str, Any],
    code: str,
    principal: str,
    tenant: str,
) -> None:
    from opentelemetry.trace import StatusCode

    caplog.set_level(logging.INFO, "eventstore.requests")
    headers = {"Content-Type": "application/json", "Es-Command-Id": "cmd-7"}
    headers["traceparent"] = TRACEPARENT
    bearer = sent.get("bearer", token())
    if bearer == "forged":
        bearer = hs256_token_signed_with_the_public_key()
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    headers.update({k: v for k, v in sent.items() if k != "bearer"})
    reply = observed.send(method, path, body, headers)
    assert reply.status_code >= 400
    assert observed.store.head_position() == 0
    subject = path.lstrip("/").replace("/", ".")
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    fields = {k: getattr(record, k) for k in ("subject", "command_id", "principal", "tenant")}
    assert fields == {
        "subject": subject,
        "command_id": "cmd-7",
        "principal": principal,
        "tenant": tenant,
    }
    assert (record.outcome, record.levelno) == (code, logging.WARNING)
    (span,) = observed.spans.get_finished_spans()
    assert span.name == path.lstrip("/")
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.status.status_code == StatusCode.ERROR and span.status.description == code
    assert span.attributes["eventstore.outcome"] == code
    assert span.attributes["eventstore.subject"] == subject
    assert span.attributes["eventstore.command_id"] == "cmd-7"
    assert span.attributes.get("enduser.id", "") == principal
    assert span.attributes.get("eventstore.tenant", "") == tenant
    assert observed.failed() == 1


def test_an_authentication_refusal_is_recorded_once_beside_a_request_that_ran(
    observed: Observed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "eventstore.requests")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token()}"}
    assert observed.send("POST", OPEN, _JSON, headers).status_code == 200
    denied = observed.send("POST", OPEN, _JSON, {**headers, "Authorization": "Bearer x"})
    assert denied.status_code == 401
    records = [r for r in caplog.records if r.name == "eventstore.requests"]
    assert [r.outcome for r in records] == ["ok", "UNAUTHENTICATED"]
    servers = [s for s in observed.spans.get_finished_spans() if s.name == "edge.v1.Accounts/Open"]
    assert [s.attributes["eventstore.outcome"] for s in servers] == ["ok", "UNAUTHENTICATED"]
