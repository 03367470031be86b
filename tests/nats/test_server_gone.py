"""A NATS server that goes away under a host or a client: every stop and exit still ends.

Found by a probe: after the server stopped, ``NatsServiceHost.stop()`` raised
(``ConnectionResetError``) or waited 10 s on a flush, and ``serve_forever()``
never returned; leaving ``async with NatsTransport(...)`` raised; a request sent
while the client reconnected waited its whole timeout for a ``TIMEOUT`` though it
was never sent; a first connection to no server took 15 s whatever
``connect_timeout`` said.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import SDK, OpenAccountCommand  # noqa: E402

from eventstore import AppError  # noqa: E402
from eventstore.core.responses import UNAVAILABLE  # noqa: E402
from eventstore.nats import EmbeddedNATS, NatsServiceHost, NatsTransport  # noqa: E402
from eventstore.sqlite import SQLiteEventStore  # noqa: E402
from examples.bankaccount import service as bank  # noqa: E402


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


def test_a_host_whose_server_stopped_stops_and_serve_forever_returns(
    own_nats: EmbeddedNATS, tmp_path: Path
) -> None:
    async def story() -> float:
        with SQLiteEventStore(tmp_path / "bank.db") as store:
            host = NatsServiceHost(own_nats.url, *bank.services(store), allow_anonymous=True)
            await host.start()
            forever = asyncio.ensure_future(host.serve_forever())  # already started: waits
            await asyncio.sleep(0.1)
            own_nats.stop()
            started = time.monotonic()
            await host.stop()
            await asyncio.wait_for(forever, 5)
            return time.monotonic() - started

    # stop_timeout (5 s by default) bounds a flush on a live connection; on a dead
    # one there is nothing to wait for.
    assert run(story()) < 4.0


def test_leaving_a_transport_whose_server_died_mid_request_does_not_raise(
    own_nats: EmbeddedNATS, tmp_path: Path
) -> None:
    async def story() -> str:
        with SQLiteEventStore(tmp_path / "bank.db") as store:
            host = NatsServiceHost(own_nats.url, *bank.services(store), allow_anonymous=True)
            await host.start()
            try:
                async with NatsTransport(own_nats.url, timeout=2) as transport:
                    sdk = SDK(transport)
                    await sdk.account.open_account(OpenAccountCommand(account_id="a", owner="A"))
                    own_nats.kill()
                    try:
                        await sdk.account.open_account(
                            OpenAccountCommand(account_id="b", owner="B")
                        )
                    except AppError as exc:
                        return exc.code
                return "no error"
            finally:
                await host.stop()

    assert run(story()) in {UNAVAILABLE, "TIMEOUT"}


def test_a_request_while_the_client_reconnects_is_unavailable_at_once(
    own_nats: EmbeddedNATS,
) -> None:
    async def story() -> tuple[str, str, float]:
        async with NatsTransport(own_nats.url, timeout=5) as transport:
            own_nats.stop()
            connection = transport.connection
            assert connection is not None
            await _until(lambda: connection.is_reconnecting)
            started = time.monotonic()
            try:
                await SDK(transport).account.open_account(
                    OpenAccountCommand(account_id="a", owner="A"), command_id="c-1"
                )
            except AppError as exc:
                return exc.code, exc.details["command_id"], time.monotonic() - started
        raise AssertionError("the request was answered with no server")

    code, command_id, waited = run(story())
    assert (code, command_id) == (UNAVAILABLE, "c-1")
    assert waited < 2.5  # not the 5 s timeout: the request was never sent


def test_a_first_connection_to_no_server_fails_within_about_connect_timeout() -> None:
    async def story() -> tuple[str, float]:
        transport = NatsTransport("nats://127.0.0.1:1", timeout=1, connect_timeout=0.5)
        started = time.monotonic()
        try:
            await SDK(transport).account.open_account(OpenAccountCommand(account_id="a", owner="A"))
        except AppError as exc:
            return exc.code, time.monotonic() - started
        finally:
            await transport.close()
        raise AssertionError("connected to no server")

    code, waited = run(story())
    assert code == UNAVAILABLE
    assert waited < 5.0  # was 15 s whatever connect_timeout said
    options = NatsTransport("nats://a:1,nats://b:2", connect_timeout=0.5).options
    assert options.first_connect_timeout == 2 * (0.5 + 0.25)  # each server once, 0.25 s apart
