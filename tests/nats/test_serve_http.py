"""``eventstore serve ... --http PORT``: the same services, chain and hook over HTTP and NATS."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import SDK, DepositCommand, GetAccountQuery, OpenAccountCommand  # noqa: E402

from eventstore import AppError  # noqa: E402
from eventstore.nats import NatsTransport  # noqa: E402
from eventstore.rpc import ConnectTransport  # noqa: E402
from eventstore.serve import ServeOptions, serve  # noqa: E402
from eventstore.sqlite import SQLiteEventStore  # noqa: E402
from tests.nats.edge_app import API_KEY  # noqa: E402


def test_serve_with_http_serves_both_wires_with_the_modules_authenticator(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bank.db"

    async def go() -> str:
        urls: list[str] = []
        ready = asyncio.Event()

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        options = ServeOptions(
            "tests.nats.edge_app",
            f"sqlite:///{db}",
            embedded=True,
            relay=False,
            projections=False,
            http_port=0,
        )
        task = asyncio.ensure_future(serve(options, on_ready))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            http = f"http://127.0.0.1:{options.http_port}"
            over_http = SDK(ConnectTransport(http, headers={"X-Api-Key": API_KEY}))
            await over_http.account.open_account(OpenAccountCommand(account_id="a", owner="A"))
            async with NatsTransport(urls[0], headers={"X-Api-Key": API_KEY}) as transport:
                await SDK(transport).account.deposit(DepositCommand(account_id="a", amount=3))
            with pytest.raises(AppError) as caught:
                await SDK(ConnectTransport(http)).account.deposit(
                    DepositCommand(account_id="a", amount=1)
                )
            async with NatsTransport(urls[0]) as anonymous:
                with pytest.raises(AppError) as over_nats:
                    await SDK(anonymous).account.deposit(DepositCommand(account_id="a", amount=1))
            return f"{caught.value.code} {over_nats.value.code}"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    assert asyncio.run(go()) == "UNAUTHENTICATED UNAUTHENTICATED"
    with SQLiteEventStore(db) as store:
        events = store.load_stream("a")
        assert [e.metadata.principal_id for e in events] == ["teller-1", "teller-1"]


def test_both_wires_store_the_same_metadata_and_refuse_a_request_of_another_type(
    tmp_path: Path,
) -> None:
    """The generated SDK over NATS and over HTTP, one server: custom metadata is stored with
    its keys and text as sent, and a query sent to a command's method runs nothing."""
    db = tmp_path / "bank.db"
    metadata = {"OrderRef": "X-7", "note": "café ☕"}

    async def go() -> list[tuple[str, str, dict[str, str]]]:
        urls: list[str] = []
        ready = asyncio.Event()

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        options = ServeOptions(
            "tests.nats.edge_app",
            f"sqlite:///{db}",
            embedded=True,
            relay=False,
            projections=False,
            http_port=0,
        )
        task = asyncio.ensure_future(serve(options, on_ready))
        refusals = []
        try:
            await asyncio.wait_for(ready.wait(), 30)
            http = ConnectTransport(
                f"http://127.0.0.1:{options.http_port}", headers={"X-Api-Key": API_KEY}
            )
            async with NatsTransport(urls[0], headers={"X-Api-Key": API_KEY}) as nats:
                for name, transport in (("http", http), ("nats", nats)):
                    sdk = SDK(transport)
                    account = f"{name}-1"
                    opened = OpenAccountCommand(account_id=account, owner="A")
                    await sdk.account.open_account(opened, metadata=metadata)
                    wrong = await transport.request(
                        "account.v1.AccountCommandService.Deposit",
                        GetAccountQuery(account_id=account),
                        {"Es-Command-Id": f"{name}-wrong"},
                    )
                    assert wrong.error is not None
                    refusals.append((name, wrong.error.code, dict(wrong.error.details)["actual"]))
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return refusals

    refusals = asyncio.run(go())
    assert refusals == [
        ("http", "INVALID_MESSAGE_TYPE", "account.v1.GetAccountQuery"),
        ("nats", "INVALID_MESSAGE_TYPE", "account.v1.GetAccountQuery"),
    ]
    with SQLiteEventStore(db) as store:
        events = store.read_all(0)
        assert [e.aggregate_id for e in events] == ["http-1", "nats-1"]
        assert [dict(e.metadata.custom) for e in events] == [metadata, metadata]


def test_serve_refuses_a_module_without_authenticate_unless_anonymous(tmp_path: Path) -> None:
    options = ServeOptions(
        "tests.nats.service_app",
        f"sqlite:///{tmp_path / 'b.db'}",
        embedded=True,
        relay=False,
        projections=False,
    )
    with pytest.raises(SystemExit, match="--allow-anonymous"):
        asyncio.run(serve(options))
