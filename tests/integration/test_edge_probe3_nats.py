"""A failing ``authenticate`` hook on the NATS service host (probe 3, defect 1's NATS side).

A real nats-server (``EmbeddedNATS``, as tests/nats/conftest.py starts it) and
a ``NatsServiceHost`` serving the edge test service; the hook fails like a key
lookup against a database that is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore.core.responses import Response
from eventstore.middleware import default_middlewares
from eventstore.nats import EmbeddedNATS, NatsServiceHost, NatsTransport
from eventstore.sqlite import SQLiteEventStore
from tests.support.edge import RULES, Accounts, pb

SECRET = "postgresql://admin:S3cretPw@db.internal:5432/users"


def failing_lookup(headers: Any) -> Any:
    raise ConnectionError(f"could not connect to {SECRET}")


@pytest.fixture
def nats_url() -> Iterator[str]:
    with EmbeddedNATS() as server:
        yield server.url


def test_a_failing_authenticate_hook_over_nats_is_a_generic_internal_with_an_error_id(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def go(store: SQLiteEventStore) -> Response:
        host = NatsServiceHost(
            nats_url,
            Accounts(store),
            authenticate=failing_lookup,
            middlewares=default_middlewares(network=True, rules=RULES),
        )
        headers = {"Authorization": "Bearer k", "Es-Command-Id": "cmd-1"}
        async with host, NatsTransport(nats_url, headers=headers) as transport:
            reply = await transport.request(
                "edge.v1.Accounts.Open", pb.Open(account_id="acc-1", owner="Ann")
            )
        host.router.close()
        return reply

    with SQLiteEventStore(tmp_path / "edge.db") as store:
        reply = asyncio.run(go(store))
        assert store.head_position() == 0
    assert reply.error is not None and reply.error.code == "INTERNAL"
    assert "S3cretPw" not in str(reply.error) + repr(reply.error.details)
    error_id = reply.error.details["error_id"]
    assert error_id in reply.error.message
    assert error_id in caplog.text and "S3cretPw" in caplog.text
    (record,) = (r for r in caplog.records if r.name == "eventstore.requests")
    assert (record.outcome, record.command_id) == ("INTERNAL", "cmd-1")
