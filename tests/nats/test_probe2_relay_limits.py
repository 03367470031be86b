"""The relay and the bus within the server's limits: long ids, big events, a closed client.

Probe 2, defects 4 and 6: an aggregate id whose escaped subject passed the server's
``max_control_line`` closed the bus's connection for good (and the read error promised a
reconnection); an event over ``max_payload`` stopped the relay with an error naming no
event, and ``RelayStatus.published`` forgot what the stream had taken. Real nats-server,
real SQLite.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventstore import Event
from eventstore.nats import EmbeddedNATS, EventTooLargeError, NatsEventBus, Relay
from eventstore.nats.envelope import (
    AGGREGATE_ID,
    MAX_ID_TOKEN,
    escape_token,
    subject_for,
    unescape_token,
)
from eventstore.sqlite import SQLiteEventStore
from tests.support.busproof import DEPOSITED
from tests.support.busproof import wait_until_async as _wait

LONG_ID = "é" * 1500  # 9,000 bytes escaped: twice the server's max_control_line


def _append_to(store: SQLiteEventStore, aggregate_id: str, data: bytes = b"x") -> None:
    from eventstore import NewEvent, new_event_id

    version = store.stream_version(aggregate_id)
    store.append(aggregate_id, "Account", version, [NewEvent(new_event_id(), DEPOSITED, data)])


def test_ordinary_ids_keep_their_subject_and_a_long_one_is_hashed_within_bounds() -> None:
    ordinary = "tenant-" + "a" * 60 + "::" + "0" * 36
    assert subject_for("events", "Account", "bank.v1.Opened", ordinary) == (
        f"events.Account.bank%2Ev1%2EOpened.{escape_token(ordinary)}"
    )
    long_subject = subject_for("events", "Account", "bank.v1.Opened", LONG_ID)
    token = long_subject.rsplit(".", 1)[1]
    assert len(long_subject) < 300 and "~" in token
    assert long_subject == subject_for("events", "Account", "bank.v1.Opened", LONG_ID)
    assert token != subject_for("events", "Account", "bank.v1.Opened", LONG_ID + "x")
    assert len(escape_token("a" * MAX_ID_TOKEN)) == MAX_ID_TOKEN  # at the bound: as it is
    with pytest.raises(ValueError, match="hash"):
        unescape_token(token)


def test_an_event_of_a_very_long_aggregate_id_is_relayed_and_the_bus_keeps_its_connection(
    own_nats: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            for aggregate_id in ("p1", LONG_ID, "p3"):
                _append_to(store, aggregate_id)
            async with NatsEventBus(
                own_nats.url, stream="P2_LONG", subject_prefix="p2long", store=store
            ) as bus:
                relay = Relay(store, bus, ack_timeout=2)
                assert await relay.publish_pending() == 3
                assert bus.client.is_connected
                read = await asyncio.to_thread(bus.read_all, 0)
                assert [e.aggregate_id for e in read] == ["p1", LONG_ID, "p3"]
                io = bus.io
                assert io is not None
                stored = await io.call(bus.js.get_msg("P2_LONG", 2))
                assert (stored.headers or {})[AGGREGATE_ID] == escape_token(LONG_ID)
                got: list[Event] = []
                async with await bus.subscribe("audit", got.append, aggregate_types=["Account"]):
                    await _wait(lambda: len(got) == 3, 10, "the three events")
                assert [e.aggregate_id for e in got] == ["p1", LONG_ID, "p3"]
        log = own_nats.log_path.read_text(errors="replace")
        assert "maximum control line exceeded" not in log

    asyncio.run(scenario())


def test_a_read_on_a_bus_whose_connection_closed_for_good_does_not_promise_a_reconnection(
    own_nats: EmbeddedNATS,
) -> None:
    async def scenario() -> None:
        async with NatsEventBus(own_nats.url, stream="P2_CLOSED", subject_prefix="p2c") as bus:
            io = bus.io
            assert io is not None
            # a protocol line over max_control_line: the server drops the client for good
            await io.call(bus.client.publish("p2c." + "x" * 5000, b""))
            await _wait(lambda: bus.client.is_closed, 10, "the server to drop the client")
            with pytest.raises(ConnectionError) as caught:
                await asyncio.to_thread(bus.read_all, 0)
            text = str(caught.value)
            assert "does not reconnect" in text and "open it again" in text
            assert "reconnects on its own" not in text

    asyncio.run(scenario())


@pytest.fixture
def small_nats() -> EmbeddedNATS:
    with EmbeddedNATS(extra_config="max_payload: 65536") as server:
        yield server  # type: ignore[misc]


def test_an_event_over_max_payload_stops_the_relay_before_it_naming_it(
    small_nats: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            _append_to(store, "p1")
            _append_to(store, "p2", b"x" * 100_000)
            _append_to(store, "p3")
            big = store.read_all()[1]
            async with NatsEventBus(
                small_nats.url, stream="P2_BIG", subject_prefix="p2big", store=store
            ) as bus:
                relay = Relay(store, bus, retry_interval=0.1)
                with pytest.raises(EventTooLargeError) as caught:
                    await relay.publish_pending()
                error = caught.value
                assert error.event.event_id == big.event_id and error.limit == 65536
                assert error.size > 100_000
                text = str(error)
                assert big.event_id in text and "position 2" in text and "max_payload" in text
                status = relay.status()
                assert (status.position, status.published, status.lag) == (1, 1, 2)
                assert status.last_error is not None and big.event_id in status.last_error
                # run() keeps the order: it stays before the event, and the connection is up
                task = asyncio.ensure_future(relay.run())
                await asyncio.sleep(0.5)
                relay.stop()
                await asyncio.wait_for(task, 10)
                assert relay.status().position == 1
                assert bus.client.is_connected
                info = await bus.io.call(bus.js.stream_info("P2_BIG"))  # type: ignore[union-attr]
                assert info.state.messages == 1

    asyncio.run(scenario())


def test_an_event_that_fits_but_not_with_its_headers_is_refused_before_the_server_sees_it(
    small_nats: EmbeddedNATS, tmp_path: Path
) -> None:
    """nats-py checks only the payload against max_payload; the server counts the headers
    too, and drops the connection for good when they pass it."""

    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            _append_to(store, "p1", b"x" * (65536 - 200))
            async with NatsEventBus(
                small_nats.url, stream="P2_EDGE", subject_prefix="p2edge", store=store
            ) as bus:
                relay = Relay(store, bus)
                with pytest.raises(EventTooLargeError):
                    await relay.publish_pending()
                await asyncio.sleep(0.3)
                assert bus.client.is_connected and not bus.client.is_closed

    asyncio.run(scenario())
