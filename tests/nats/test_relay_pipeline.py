"""The relay's pipeline: read-ahead from the store, acks filed by index, and what an ack says.

A real nats-server and SQLite store; the stream's contents are the assertion.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventstore import NewEvent, new_event_id
from eventstore.nats import EmbeddedNATS, NatsEventBus, Relay
from eventstore.nats.relay import PublishRejected, _read_ack
from eventstore.sqlite import SQLiteEventStore


def _append(store: SQLiteEventStore, aggregate: str, count: int) -> list[str]:
    ids = [new_event_id() for _ in range(count)]
    store.append(aggregate, "Account", 0, [NewEvent(i, "bank.v1.Deposited", b"x") for i in ids])
    return ids


def test_a_relay_overtaken_during_its_read_ahead_resumes_and_stores_each_event_once(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def story(store: SQLiteEventStore) -> tuple[int, int, int, list[str]]:
        async with NatsEventBus(
            nats_server.url, stream="PIPE_OVERTAKEN", subject_prefix="pipeov", duplicate_window=1
        ) as bus:
            late = Relay(store, bus, batch=2, window=2, name="pipe")
            assert await late.publish_pending() == 0  # it now expects an empty stream
            ids = _append(store, "acc-1", 10)
            first = await Relay(store, bus, batch=2, window=2, name="pipe").publish_pending()
            await asyncio.sleep(1.2)  # past the duplicate window: only the chain protects
            ids += _append(store, "acc-2", 4)
            # Its first batch is refused (10071) while the next one is being read ahead;
            # it resumes after the stream's last message and publishes only the new four.
            second = await late.publish_pending()
            stored = await asyncio.to_thread(bus.read_all, 0)
            info = await bus.js.stream_info("PIPE_OVERTAKEN")
            assert [e.event_id for e in stored] == ids
            return first, second, int(info.state.messages), [e.event_id for e in stored]

    with SQLiteEventStore(tmp_path / "pipe.db") as store:
        first, second, messages, stored = asyncio.run(asyncio.wait_for(story(store), 60))
    assert (first, second, messages) == (10, 4, 14)
    assert len(set(stored)) == 14


def test_a_window_of_one_still_publishes_in_order(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def story(store: SQLiteEventStore) -> tuple[int, list[int]]:
        async with NatsEventBus(
            nats_server.url, stream="PIPE_ONE", subject_prefix="pipeone"
        ) as bus:
            published = await Relay(store, bus, batch=3, window=1).publish_pending()
            return published, [e.position for e in await asyncio.to_thread(bus.read_all, 0)]

    with SQLiteEventStore(tmp_path / "one.db") as store:
        _append(store, "acc-1", 7)
        published, positions = asyncio.run(asyncio.wait_for(story(store), 60))
    assert published == 7 and positions == list(range(1, 8))


def test_a_publish_no_stream_takes_fails_and_the_relay_stays_before_it(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    # The server answers such a publish with an empty status message (503, no
    # responders), as it does while a cluster elects the stream's leader. That reply
    # was once filed as "stored": the relay moved its position and checkpoint past
    # events the stream never held (found by the 3-node SIGKILL test).
    async def story(store: SQLiteEventStore) -> tuple[PublishRejected, int, int]:
        async with NatsEventBus(
            nats_server.url, stream="PIPE_GONE", subject_prefix="pipegone"
        ) as bus:
            relay = Relay(store, bus, batch=10, window=4, ack_timeout=2.0, name="gone")
            assert await relay.publish_pending() == 0  # resumed on the empty stream
            await bus.js.delete_stream("PIPE_GONE")
            _append(store, "acc-1", 5)
            with pytest.raises(PublishRejected) as caught:
                await relay.publish_pending()
            return caught.value, relay.position, relay.status().published

    with SQLiteEventStore(tmp_path / "gone.db") as store:
        error, position, published = asyncio.run(asyncio.wait_for(story(store), 60))
        assert store.load_checkpoint("gone") == 0
    assert error.event.position == 1
    assert "status 503" in str(error) and "no responders" in str(error)
    assert (position, published) == (0, 0)


def test_an_ack_is_read_without_json_unless_it_may_say_more_than_stored() -> None:
    assert _read_ack(b'{"stream":"EVENTS","seq":7}') == (False, None)
    assert _read_ack(b'{"stream":"EVENTS","seq":7,"duplicate":true}') == (True, None)
    assert _read_ack(
        b'{"error":{"code":400,"err_code":10070,"description":"wrong last msg ID"}}'
    ) == (False, (10070, "wrong last msg ID"))
    duplicate, error = _read_ack(b'{"error": not json')
    assert not duplicate and error is not None and error[0] == 0
    assert "unreadable acknowledgement" in error[1]
    # A reply that names no sequence is not an ack: never "stored".
    assert _read_ack(b"{}") == (False, (0, "not a publish acknowledgement: b'{}'"))


def test_reads_skip_a_deleted_message_and_a_foreign_one_and_continue_after_them(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    """Pages are read without headers when every sequence of a range is there; a deleted
    message makes the range be read again with headers, a foreign one is skipped."""

    async def story(store: SQLiteEventStore) -> tuple[list[str], ...]:
        async with NatsEventBus(
            nats_server.url, stream="PIPE_GAPS", subject_prefix="pipegap", store=store
        ) as bus:
            await Relay(store, bus).publish_pending()
            await bus.io.call(bus.js.publish("pipegap.Foreign.x.y", b"not an event"))
            ids = _append(store, "acc-2", 3)
            await Relay(store, bus).publish_pending()
            whole = [e.event_id for e in await asyncio.to_thread(bus.read_all, 0)]
            await bus.io.call(bus.js.delete_msg("PIPE_GAPS", 3))  # position 3 of 8
            gapped = [e.event_id for e in await asyncio.to_thread(bus.read_all, 0)]
            paged = []
            after = 0
            while True:  # two at a time: each page starts where the last one ended
                page = await bus.read_page_async(after, limit=2)
                paged += [e.event_id for e in page.events]
                if page.scanned_to <= after:
                    break
                after = page.scanned_to
            return whole, gapped, paged, ids

    with SQLiteEventStore(tmp_path / "gaps.db") as store:
        first = _append(store, "acc-1", 5)
        whole, gapped, paged, later = asyncio.run(asyncio.wait_for(story(store), 60))
    assert whole == first + later
    assert gapped == paged == first[:2] + first[3:] + later
