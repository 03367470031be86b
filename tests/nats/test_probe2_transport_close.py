"""``NatsTransport.close()`` answers the requests in flight at once, and sends nothing after.

Probe 2, defect 10: requests in flight waited their whole timeout after ``close()`` and
then heard ``TIMEOUT``; a closed transport opened a new connection by itself on the next
request (a connection nothing closed). Real nats-server, a real ``NatsServiceHost``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import AccountView, GetAccountQuery  # noqa: E402

from eventstore.core.headers import COMMAND_ID_HEADER  # noqa: E402
from eventstore.core.responses import UNAVAILABLE, Response  # noqa: E402
from eventstore.core.routing import RequestContext, Route  # noqa: E402
from eventstore.nats import EmbeddedNATS, NatsServiceHost, NatsTransport  # noqa: E402

SLEEP = "test.v1.Sleep.Get"


def _sleeper() -> Route:
    async def handle(query: Message, ctx: RequestContext) -> AccountView:
        await asyncio.sleep(float(query.account_id or 0))  # type: ignore[attr-defined]
        return AccountView(account_id=ctx.command_id)

    return Route(SLEEP, GetAccountQuery, AccountView, handle)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_close_answers_the_requests_in_flight_at_once_with_unavailable(
    nats_server: EmbeddedNATS,
) -> None:
    async def go() -> tuple[list[Response], float]:
        async with NatsServiceHost(nats_server.url, _sleeper(), allow_anonymous=True):
            transport = NatsTransport(nats_server.url, timeout=5)
            await transport.connect()
            calls = [
                asyncio.ensure_future(
                    transport.request(
                        SLEEP, GetAccountQuery(account_id="2"), {COMMAND_ID_HEADER: f"c-{i}"}
                    )
                )
                for i in range(2)
            ]
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await transport.close()
            replies = await asyncio.gather(*calls)
            return replies, time.monotonic() - started

    replies, took = run(go())
    assert took < 1.0, f"the callers waited {took:.1f} s after close()"
    for i, reply in enumerate(replies):
        assert reply.error is not None and reply.error.code == UNAVAILABLE
        assert reply.error.details["command_id"] == f"c-{i}"
        assert "may or may not have been applied" in reply.error.message


def test_a_closed_transport_refuses_requests_and_opens_no_connection(
    nats_server: EmbeddedNATS,
) -> None:
    async def go() -> tuple[Response, NatsTransport, Response]:
        async with NatsServiceHost(nats_server.url, _sleeper(), allow_anonymous=True):
            async with NatsTransport(nats_server.url) as transport:
                assert (await transport.request(SLEEP, GetAccountQuery())).success
            refused = await transport.request(SLEEP, GetAccountQuery(), {COMMAND_ID_HEADER: "c-9"})
            assert transport.connection is None and transport.is_closed
            await transport.connect()  # an explicit connect opens it again
            try:
                again = await transport.request(SLEEP, GetAccountQuery())
            finally:
                await transport.close()
            return refused, transport, again

    refused, _, again = run(go())
    assert refused.error is not None and refused.error.code == UNAVAILABLE
    assert "closed" in refused.error.message and "not sent" in refused.error.message
    assert refused.error.details["command_id"] == "c-9"
    assert again.success


def test_a_caller_cancelling_its_own_request_still_gets_the_cancellation(
    nats_server: EmbeddedNATS,
) -> None:
    async def go() -> None:
        async with (
            NatsServiceHost(nats_server.url, _sleeper(), allow_anonymous=True),
            NatsTransport(nats_server.url) as transport,
        ):
            call = asyncio.ensure_future(transport.request(SLEEP, GetAccountQuery(account_id="2")))
            await asyncio.sleep(0.2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call

    run(go())
