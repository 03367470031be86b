"""Services over NATS: the bank account end to end, bad input over the wire, concurrency.

Every test runs a real nats-server (``nats_server``, from tests/nats/conftest.py),
a real SQLite store, a ``NatsServiceHost`` and a ``NatsTransport`` or a raw
nats-py client: nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import nats
import pytest
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import (  # noqa: E402
    SDK,
    AccountView,
    DepositCommand,
    GetAccountQuery,
    OpenAccountCommand,
    WithdrawCommand,
)

from eventstore import AppError  # noqa: E402
from eventstore.core.headers import (  # noqa: E402
    COMMAND_ID_HEADER,
    CORRELATION_ID_HEADER,
    MESSAGE_TYPE_HEADER,
    PRINCIPAL_ID_HEADER,
    TENANT_ID_HEADER,
    TRACEPARENT_HEADER,
)
from eventstore.core.responses import (  # noqa: E402
    INTERNAL,
    INVALID_MESSAGE_TYPE,
    INVALID_REQUEST,
    NO_HANDLER,
    REPLY_TOO_LARGE,
    REQUEST_TOO_LARGE,
    TIMEOUT,
    UNAVAILABLE,
    Response,
)
from eventstore.core.routing import RequestContext, Route  # noqa: E402
from eventstore.core.transport import InProcessTransport  # noqa: E402
from eventstore.nats import EmbeddedNATS, NatsServiceHost, NatsTransport  # noqa: E402
from eventstore.nats.service import micro_service_name  # noqa: E402
from eventstore.proto.eventsourcing import response_pb2  # noqa: E402
from eventstore.sqlite import SQLiteEventStore  # noqa: E402
from examples.bankaccount import service as bank  # noqa: E402

DEPOSIT = "account.v1.AccountCommandService.Deposit"
GET = "account.v1.AccountQueryService.GetAccount"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


async def raw_request(url: str, subject: str, data: bytes, headers: dict[str, str]) -> Response:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(subject, data, timeout=5, headers=headers)
    finally:
        await nc.close()
    return Response.from_proto(response_pb2.Response.FromString(msg.data))


def test_bank_account_end_to_end_over_nats(nats_server: EmbeddedNATS, tmp_path: Path) -> None:
    async def story() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with SQLiteEventStore(tmp_path / "bank.db") as store:
            async with (
                NatsServiceHost(nats_server.url, *bank.services(store), allow_anonymous=True),
                NatsTransport([nats_server.url]) as transport,
            ):
                sdk = SDK(transport)
                opened = await sdk.account.open_account(
                    OpenAccountCommand(account_id="acc-1", owner="Alice", initial_deposit=100)
                )
                seen["opened_version"] = opened.version
                after = await sdk.account.deposit(DepositCommand(account_id="acc-1", amount=50))
                seen["balance_after_deposit"] = after.balance
                with pytest.raises(AppError) as refused:
                    await sdk.account.withdraw(WithdrawCommand(account_id="acc-1", amount=500))
                seen["refusal"] = (refused.value.code, refused.value.details)
                first = await sdk.account.deposit(
                    DepositCommand(account_id="acc-1", amount=25), command_id="dep-1"
                )
                again = await sdk.account.deposit(
                    DepositCommand(account_id="acc-1", amount=25), command_id="dep-1"
                )
                seen["retry"] = ((first.balance, first.version), (again.balance, again.version))
                view = await sdk.account.get_account(GetAccountQuery(account_id="acc-1"))
                seen["view"] = (view.owner, view.balance, view.version)
                seen["events"] = [e.event_type for e in store.load_stream("acc-1")]
        return seen

    seen = run(story())
    assert seen["opened_version"] == 1
    assert seen["balance_after_deposit"] == 150
    assert seen["refusal"] == ("INSUFFICIENT_FUNDS", {"balance": "150", "requested": "500"})
    assert seen["retry"] == ((175, 3), (175, 3))
    assert seen["view"] == ("Alice", 175, 3)
    assert seen["events"] == [
        "account.v1.AccountOpenedEvent",
        "account.v1.MoneyDepositedEvent",
        "account.v1.MoneyDepositedEvent",
    ]


def test_a_retried_command_id_is_applied_once_on_either_transport(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def twice(transport: Any, store: SQLiteEventStore, account: str) -> list[int]:
        sdk = SDK(transport)
        await sdk.account.open_account(OpenAccountCommand(account_id=account, owner="Bo"))
        versions = []
        for _ in range(3):
            reply = await sdk.account.deposit(
                DepositCommand(account_id=account, amount=7), command_id=f"{account}-dep"
            )
            versions.append(reply.version)
        return [*versions, len(store.load_stream(account))]

    async def both() -> tuple[list[int], list[int]]:
        with SQLiteEventStore(tmp_path / "bank.db") as store:
            local = await twice(InProcessTransport(*bank.services(store)), store, "in-process")
            async with (
                NatsServiceHost(nats_server.url, *bank.services(store), allow_anonymous=True),
                NatsTransport(nats_server.url) as transport,
            ):
                remote = await twice(transport, store, "over-nats")
        return local, remote

    local, remote = run(both())
    assert local == [2, 2, 2, 2]
    assert remote == [2, 2, 2, 2]


def test_services_answer_the_micro_api_under_the_eventstore_queue_group(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def ask() -> tuple[list[str], dict[str, Any]]:
        with SQLiteEventStore(tmp_path / "bank.db") as store:
            async with NatsServiceHost(nats_server.url, *bank.services(store), version="2.1.0", allow_anonymous=True):
                nc = await nats.connect(nats_server.url)
                try:
                    name = micro_service_name("account.v1.AccountCommandService")
                    ping = await nc.request(f"$SRV.PING.{name}", b"", timeout=2)
                    info = await nc.request(f"$SRV.INFO.{name}", b"", timeout=2)
                finally:
                    await nc.close()
        return [json.loads(ping.data)["name"]], json.loads(info.data)

    names, info = run(ask())
    assert names == ["account_v1_AccountCommandService"]
    assert info["version"] == "2.1.0"
    endpoints = {e["name"]: (e["subject"], e["queue_group"]) for e in info["endpoints"]}
    assert endpoints["Deposit"] == (DEPOSIT, "eventstore")
    assert endpoints["unknown_method"] == ("account.v1.AccountCommandService.>", "eventstore")


def _bad_routes(calls: list[str]) -> list[Route]:
    """A query service with a huge reply and a handler that raises."""

    def huge(query: Message, ctx: RequestContext) -> AccountView:
        calls.append("huge")
        return AccountView(account_id="x", owner="o" * 1_100_000)

    def broken(query: Message, ctx: RequestContext) -> AccountView:
        calls.append("broken")
        raise RuntimeError("secret-db-password leaked in a message")

    return [
        Route("test.v1.Odd.Huge", GetAccountQuery, AccountView, huge),
        Route("test.v1.Odd.Broken", GetAccountQuery, AccountView, broken),
    ]


def test_bad_input_over_the_wire_gets_error_replies_and_the_host_keeps_serving(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    calls: list[str] = []

    async def probe() -> dict[str, Any]:
        out: dict[str, Any] = {}
        url = nats_server.url
        with SQLiteEventStore(tmp_path / "bank.db") as store:
            async with (
                NatsServiceHost(url, *bank.services(store), *_bad_routes(calls), allow_anonymous=True),
                NatsTransport(url, timeout=3) as transport,
            ):
                sdk = SDK(transport)
                await sdk.account.open_account(OpenAccountCommand(account_id="a", owner="A"))
                head = store.head_position()
                out["malformed"] = await raw_request(url, DEPOSIT, b"\xff\xff\xff\xff", {})
                out["wrong_type"] = await raw_request(
                    url,
                    DEPOSIT,
                    GetAccountQuery(account_id="a").SerializeToString(),
                    {MESSAGE_TYPE_HEADER: "account.v1.GetAccountQuery"},
                )
                out["unknown_method"] = await raw_request(
                    url, "account.v1.AccountCommandService.Teleport", b"", {}
                )
                out["unserved"] = await transport.request(
                    "nobody.v1.Serves.This", GetAccountQuery(account_id="a")
                )
                out["too_big_request"] = await transport.request(
                    DEPOSIT, OpenAccountCommand(account_id="a", owner="x" * 1_100_000)
                )
                out["too_big_reply"] = await transport.request(
                    "test.v1.Odd.Huge", GetAccountQuery(), {COMMAND_ID_HEADER: "big-1"}
                )
                out["raising"] = await transport.request("test.v1.Odd.Broken", GetAccountQuery())
                out["head_unchanged"] = store.head_position() == head
                still = await sdk.account.deposit(DepositCommand(account_id="a", amount=5))
                out["still_serving"] = still.balance
        return out

    out = run(probe())
    assert out["malformed"].error.code == INVALID_REQUEST
    assert out["malformed"].error.details["expected"] == "account.v1.DepositCommand"
    assert out["wrong_type"].error.code == INVALID_MESSAGE_TYPE
    assert out["wrong_type"].error.details["actual"] == "account.v1.GetAccountQuery"
    assert out["unknown_method"].error.code == NO_HANDLER
    assert "Teleport" in out["unknown_method"].error.message
    assert "Deposit" in out["unknown_method"].error.message
    assert out["unserved"].error.code == UNAVAILABLE
    assert out["unserved"].error.details["subject"] == "nobody.v1.Serves.This"
    big = out["too_big_request"].error
    assert big.code == REQUEST_TOO_LARGE and int(big.details["size"]) > int(big.details["limit"])
    assert "max_payload" in big.message
    reply = out["too_big_reply"].error
    assert reply.code == REPLY_TOO_LARGE and reply.details["command_id"] == "big-1"
    raising = out["raising"].error
    assert raising.code == INTERNAL
    assert "secret" not in raising.message + raising.solution + str(raising.details)
    assert "RuntimeError" not in raising.message
    assert out["head_unchanged"] is True
    assert out["still_serving"] == 5
    assert calls == ["huge", "broken"]


def test_headers_reach_the_handler_and_principal_and_tenant_are_dropped(
    nats_server: EmbeddedNATS,
) -> None:
    seen: list[RequestContext] = []

    def echo(query: Message, ctx: RequestContext) -> AccountView:
        seen.append(ctx)
        return AccountView(account_id=ctx.command_id)

    async def call() -> tuple[AccountView, Response]:
        route = Route("test.v1.Echo.Get", GetAccountQuery, AccountView, echo)
        async with (
            NatsServiceHost(nats_server.url, route, allow_anonymous=True),
            NatsTransport(nats_server.url) as transport,
        ):
            headers = {
                COMMAND_ID_HEADER: "cmd-7",
                CORRELATION_ID_HEADER: "corr-1",
                PRINCIPAL_ID_HEADER: "admin",
                "Es-Meta-source": "test",
            }
            reply = await transport.request("test.v1.Echo.Get", GetAccountQuery(), headers)
            posing = await transport.request(
                "test.v1.Echo.Get", GetAccountQuery(), {TENANT_ID_HEADER: "other-tenant"}
            )
            # An anonymous caller belongs to no tenant (docs/service-edge.md).
            assert posing.error is not None and posing.error.code == "TENANT_FORBIDDEN"
            traced = await transport.request(
                "test.v1.Echo.Get",
                GetAccountQuery(),
                {TRACEPARENT_HEADER: "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
            )
        return reply.unwrap(AccountView), traced

    reply, _ = run(call())
    assert reply.account_id == "cmd-7"
    ctx, traced = seen
    metadata = ctx.metadata
    assert (metadata.causation_id, metadata.correlation_id) == ("cmd-7", "corr-1")
    assert (metadata.principal_id, metadata.tenant_id) == ("", "")
    assert metadata.custom == {"source": "test"}
    assert (
        ctx.headers[TRACEPARENT_HEADER].startswith("00-")
        and len(ctx.headers[TRACEPARENT_HEADER]) == 55
    )
    assert traced.headers[TRACEPARENT_HEADER] == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def _sleeper(log: list[tuple[str, float]], active: list[int]) -> Route:
    async def handle(query: Message, ctx: RequestContext) -> AccountView:
        active[0] += 1
        active[1] = max(active[1], active[0])
        try:
            delay = float(query.account_id or 0)  # type: ignore[attr-defined]
            await asyncio.sleep(delay)
        finally:
            active[0] -= 1
        log.append((ctx.command_id, time.perf_counter()))
        return AccountView(account_id=ctx.command_id)

    return Route("test.v1.Sleep.Get", GetAccountQuery, AccountView, handle)


def _sync_sleeper(log: list[tuple[str, float]]) -> Route:
    def handle(query: Message, ctx: RequestContext) -> AccountView:
        time.sleep(float(query.account_id or 0))  # type: ignore[attr-defined]
        log.append((ctx.command_id, time.perf_counter()))
        return AccountView(account_id=ctx.command_id)

    return Route("test.v1.Sleep.Get", GetAccountQuery, AccountView, handle)


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_50ms_handler_does_not_delay_a_second_request_to_the_same_endpoint(
    nats_server: EmbeddedNATS, kind: str
) -> None:
    """Async handlers overlap in the host's tasks; sync ones on the Router's thread pool."""
    done: list[tuple[str, float]] = []
    route = _sleeper(done, [0, 0]) if kind == "async" else _sync_sleeper(done)

    async def go() -> tuple[float, float]:
        async with (
            NatsServiceHost(nats_server.url, route, allow_anonymous=True),
            NatsTransport(nats_server.url) as transport,
        ):
            await transport.request("test.v1.Sleep.Get", GetAccountQuery())  # warm up
            start = time.perf_counter()
            slow = asyncio.ensure_future(
                transport.request(
                    "test.v1.Sleep.Get",
                    GetAccountQuery(account_id="0.05"),
                    {COMMAND_ID_HEADER: "slow"},
                )
            )
            await asyncio.sleep(0.005)
            await transport.request(
                "test.v1.Sleep.Get", GetAccountQuery(account_id="0"), {COMMAND_ID_HEADER: "fast"}
            )
            fast_took = time.perf_counter() - start
            await slow
            return fast_took, time.perf_counter() - start

    fast_took, slow_took = run(go())
    assert [name for name, _ in done[1:]] == ["fast", "slow"]
    assert fast_took < 0.045, f"the fast request waited {fast_took * 1000:.1f} ms"
    assert slow_took >= 0.05


def test_max_in_flight_bounds_the_requests_answered_at_once(nats_server: EmbeddedNATS) -> None:
    active = [0, 0]

    async def go() -> list[Response]:
        async with (
            NatsServiceHost(nats_server.url, _sleeper([], active), max_in_flight=2, allow_anonymous=True),
            NatsTransport(nats_server.url) as transport,
        ):
            return await asyncio.gather(
                *(
                    transport.request("test.v1.Sleep.Get", GetAccountQuery(account_id="0.03"))
                    for _ in range(6)
                )
            )

    replies = run(go())
    assert all(r.success for r in replies)
    assert active[1] == 2


def test_a_request_without_reply_in_time_is_a_timeout_naming_its_command_id(
    nats_server: EmbeddedNATS,
) -> None:
    async def go() -> Response:
        async with (
            NatsServiceHost(nats_server.url, _sleeper([], [0, 0]), allow_anonymous=True),
            NatsTransport(nats_server.url, timeout=0.2) as transport,
        ):
            return await transport.request(
                "test.v1.Sleep.Get", GetAccountQuery(account_id="0.5"), {COMMAND_ID_HEADER: "c-9"}
            )

    reply = run(go())
    assert reply.error is not None and reply.error.code == TIMEOUT
    assert reply.error.details["command_id"] == "c-9"


def test_a_transport_with_no_server_is_unavailable() -> None:
    async def go() -> Response:
        transport = NatsTransport(
            "nats://127.0.0.1:1", timeout=0.5, connect_timeout=0.5, initial_timeout=1
        )
        try:
            return await transport.request(GET, GetAccountQuery(), {COMMAND_ID_HEADER: "c-1"})
        finally:
            await transport.close()

    reply = run(go())
    assert reply.error is not None and reply.error.code == UNAVAILABLE
    assert reply.error.details["command_id"] == "c-1"
    assert "127.0.0.1:1" in reply.error.message


def test_constructors_check_their_options() -> None:
    with pytest.raises(ValueError, match="semantic version"):
        NatsServiceHost("nats://127.0.0.1:4222", version="one", allow_anonymous=True)
    with pytest.raises(ValueError, match="max_in_flight"):
        NatsServiceHost("nats://127.0.0.1:4222", max_in_flight=0, allow_anonymous=True)
    with pytest.raises(ValueError, match="server"):
        NatsTransport([])
    with pytest.raises(ValueError, match="timeout"):
        NatsTransport("nats://127.0.0.1:4222", timeout=0)
    assert micro_service_name("account.v1.AccountCommandService") == (
        "account_v1_AccountCommandService"
    )


def test_the_example_tells_the_same_story_over_nats(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    import subprocess

    def tell(*extra: str) -> str:
        db = tmp_path / f"bank{len(extra)}.db"
        result = subprocess.run(
            [sys.executable, "-m", "examples.bankaccount", "--db", str(db), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.replace(str(db), "DB")

    in_process = tell()
    over_nats = tell("--nats", nats_server.url)
    assert "refused: INSUFFICIENT_FUNDS" in over_nats
    assert "retry: balance 175 v3; events stored: 3" in over_nats
    assert over_nats == in_process


def test_replies_that_are_no_eventstore_response_become_clear_errors(
    nats_server: EmbeddedNATS,
) -> None:
    async def go() -> tuple[Response, Response]:
        nc = await nats.connect(nats_server.url)
        try:

            async def garbage(msg: Any) -> None:
                await msg.respond(b"\xff\xff\xff")

            async def service_error(msg: Any) -> None:
                await nc.publish(
                    msg.reply,
                    b"",
                    headers={"Nats-Service-Error": "boom", "Nats-Service-Error-Code": "500"},
                )

            await nc.subscribe("other.v1.Garbage.Get", cb=garbage)
            await nc.subscribe("other.v1.Failing.Get", cb=service_error)
            await nc.flush()
            async with NatsTransport(nats_server.url) as transport:
                first = await transport.request("other.v1.Garbage.Get", GetAccountQuery())
                second = await transport.request("other.v1.Failing.Get", GetAccountQuery())
        finally:
            await nc.close()
        return first, second

    garbage, failing = run(go())
    assert garbage.error is not None and garbage.error.code == "INVALID_RESPONSE_TYPE"
    assert failing.error is not None and failing.error.code == INTERNAL
    assert "boom" in failing.error.message


def test_stopping_the_host_finishes_the_requests_in_flight(nats_server: EmbeddedNATS) -> None:
    async def go() -> tuple[Response, Response]:
        host = NatsServiceHost(nats_server.url, _sleeper([], [0, 0]), allow_anonymous=True)
        await host.start()
        async with NatsTransport(nats_server.url, timeout=2) as transport:
            slow = asyncio.ensure_future(
                transport.request("test.v1.Sleep.Get", GetAccountQuery(account_id="0.2"))
            )
            while host.in_flight == 0:
                await asyncio.sleep(0.005)
            await host.stop()
            after = await transport.request("test.v1.Sleep.Get", GetAccountQuery())
            return await slow, after

    finished, after = run(go())
    assert finished.success
    assert after.error is not None and after.error.code == UNAVAILABLE


def test_a_host_registers_bindings_only_before_it_starts(nats_server: EmbeddedNATS) -> None:
    async def go() -> None:
        async with NatsServiceHost(nats_server.url, _sleeper([], [0, 0]), allow_anonymous=True) as host:
            assert host.services == {"test.v1.Sleep": ["test.v1.Sleep.Get"]}
            with pytest.raises(RuntimeError, match="before the host starts"):
                host.register(Route("test.v1.Late.Get", GetAccountQuery, AccountView, print))

    run(go())
    with pytest.raises(ValueError, match="no service to serve"):
        run(NatsServiceHost(nats_server.url, allow_anonymous=True).start())


def test_host_and_transport_take_credentials() -> None:
    async def go(server: EmbeddedNATS) -> tuple[Response, Response]:
        async with (
            NatsServiceHost(server.url, _sleeper([], [0, 0]), user="svc", password="pw", allow_anonymous=True),
            NatsTransport(server.url, user="svc", password="pw") as transport,
        ):
            allowed = await transport.request("test.v1.Sleep.Get", GetAccountQuery())
        stranger = NatsTransport(server.url, timeout=1, connect_timeout=0.5)
        try:
            refused = await stranger.request("test.v1.Sleep.Get", GetAccountQuery())
        finally:
            await stranger.close()
        return allowed, refused

    with EmbeddedNATS(user="svc", password="pw") as server:
        allowed, refused = run(go(server))
    assert allowed.success
    assert refused.error is not None and refused.error.code == UNAVAILABLE
