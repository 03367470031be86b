"""NatsEventBus: the relayed log read back exactly as the store holds it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats
import pytest

from eventstore.core.projections import ProjectionManager
from eventstore.nats import (
    BusHistoryTruncatedError,
    EmbeddedNATS,
    NatsEventBus,
    Relay,
    StreamConfigMismatchError,
)
from eventstore.nats.envelope import escape_token, subject_for, unescape_token
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel
from tests.support.busproof import Ledger, append, assert_exactly_once


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    fields = (
        "event_id",
        "aggregate_id",
        "aggregate_type",
        "event_type",
        "version",
        "position",
        "timestamp_micros",
        "data",
        "metadata_json",
        "constraints_json",
    )
    return all(getattr(a, f) == getattr(b, f) for f in fields)


@pytest.mark.parametrize(
    "value", ["bank.v1.Deposited", "acc 1", "a*b>c", "", "%", "héllo", "plain_Id-9"]
)
def test_subject_tokens_escape_reversibly(value: str) -> None:
    token = escape_token(value)
    assert not any(c in token for c in ". *>\t") and token
    assert unescape_token(token) == value


def test_subject_names_aggregate_type_event_type_and_id() -> None:
    assert subject_for("events", "Account", "bank.v1.Opened", "a.1") == (
        "events.Account.bank%2Ev1%2EOpened.a%2E1"
    )


def test_relayed_events_read_back_with_every_field(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 120, per_append=3)
            async with NatsEventBus(
                nats_server.url, stream="T_FIELDS", subject_prefix="tf", store=store
            ) as bus:
                relay = Relay(store, bus)
                assert await relay.publish_pending() == 120
                assert await relay.publish_pending() == 0
                got = await asyncio.to_thread(bus.read_all, 0)
                want = store.read_all()
                assert [e.position for e in got] == [e.position for e in want]
                assert all(_same(a, b) for a, b in zip(got, want, strict=True))
                assert got[0].metadata.custom == {"line": "a\r\nb"}
                middle = await asyncio.to_thread(bus.read_all, 57, limit=10)
                assert [e.position for e in middle] == list(range(58, 68))
                page = await asyncio.to_thread(bus.read_page, 100, limit=50)
                assert page.scanned_to == 120 and len(page.events) == 20
                assert relay.status().lag == 0 and bus.head_position() == 120

    asyncio.run(scenario())


def test_projection_manager_runs_unchanged_on_the_bus(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        append(store, 200, per_append=4)
        bus = NatsEventBus(nats_server.url, stream="T_PM", subject_prefix="tpm").open()
        try:
            asyncio.run(Relay(store, bus).publish_pending())
            with SQLiteReadModel(tmp_path / "read.db") as model:
                manager = ProjectionManager(bus)
                manager.register(Ledger(), read_model=model)
                manager.catch_up()
            assert_exactly_once(store, tmp_path / "read.db")
        finally:
            bus.close()


def test_an_existing_stream_with_another_config_is_refused(nats_server: EmbeddedNATS) -> None:
    async def scenario() -> None:
        async with NatsEventBus(nats_server.url, stream="T_CFG", subject_prefix="tcfg"):
            pass
        with pytest.raises(StreamConfigMismatchError) as caught:
            async with NatsEventBus(
                nats_server.url, stream="T_CFG", subject_prefix="tcfg", max_age=60
            ):
                pass
        assert caught.value.expected["max_age"] == 60.0
        assert caught.value.actual["max_age"] == 0.0
        assert "max_age" in str(caught.value)

    asyncio.run(scenario())


def test_truncated_history_raises_without_a_store_and_reads_the_store_with_one(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 30)
            async with NatsEventBus(nats_server.url, stream="T_TRUNC", subject_prefix="ttr") as bus:
                await Relay(store, bus).publish_pending()
                await bus.io.call(bus.js.purge_stream("T_TRUNC", keep=10))  # 21..30 remain
                with pytest.raises(BusHistoryTruncatedError) as caught:
                    await asyncio.to_thread(bus.read_all, 5)
                assert (caught.value.after_position, caught.value.first_position) == (5, 21)
                assert [e.position for e in await asyncio.to_thread(bus.read_all, 20)] == list(
                    range(21, 31)
                )
            async with NatsEventBus(
                nats_server.url, stream="T_TRUNC", subject_prefix="ttr", store=store
            ) as bus:
                got = await asyncio.to_thread(bus.read_all, 5)
                assert [e.position for e in got] == list(range(6, 31))

    asyncio.run(scenario())


def test_a_fresh_reader_reads_past_a_foreign_message_without_skipping_what_precedes_it(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    # A message that is no envelope has no position: the binary search of a reader
    # with no cursor took it for position 0 and jumped past the events before it.
    async def scenario() -> list[int]:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            async with NatsEventBus(
                nats_server.url, stream="T_FOREIGN", subject_prefix="tfo"
            ) as bus:
                append(store, 100)
                relay = Relay(store, bus)
                await relay.publish_pending()
                await bus.io.call(bus.js.publish("tfo.Foreign.Thing.x", b"not an envelope"))
                append(store, 100)
                await relay.publish_pending()
            async with NatsEventBus(
                nats_server.url, stream="T_FOREIGN", subject_prefix="tfo"
            ) as fresh:
                return [e.position for e in await asyncio.to_thread(fresh.read_all, 0)]

    assert asyncio.run(scenario()) == list(range(1, 201))


def test_a_stream_newer_than_the_store_is_read_with_its_past_from_the_store(
    tmp_path: Path,
) -> None:
    # The store outlives the stream (an embedded server's temporary JetStream folder):
    # the relay goes on from its checkpoint, and the stream starts at position 11.
    async def scenario() -> tuple[list[int], int, str]:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 10)
            with EmbeddedNATS() as first:
                async with NatsEventBus(first.url, store=store) as bus:
                    await Relay(store, bus).publish_pending()
            append(store, 5)
            with EmbeddedNATS() as second:
                async with NatsEventBus(second.url, store=store) as bus:
                    await Relay(store, bus).publish_pending()
                    got = [e.position for e in await asyncio.to_thread(bus.read_all, 0)]
                    with SQLiteReadModel(tmp_path / "read.db") as model:
                        manager = ProjectionManager(bus)
                        manager.register(Ledger(), read_model=model)
                        handled = manager.catch_up()["ledger"]
                async with NatsEventBus(second.url) as bare:
                    with pytest.raises(BusHistoryTruncatedError) as caught:
                        await asyncio.to_thread(bare.read_all, 0)
                return got, handled, str(caught.value)

    got, handled, message = asyncio.run(scenario())
    assert got == list(range(1, 16)) and handled == 15
    assert "store=store" in message


def test_a_stream_whose_messages_all_expired_is_read_from_the_store(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> list[int]:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 10)
            async with NatsEventBus(
                nats_server.url, stream="T_EXPIRED", subject_prefix="tex", store=store
            ) as bus:
                await Relay(store, bus).publish_pending()
                await bus.io.call(bus.js.purge_stream("T_EXPIRED"))  # as max_age would
                return [e.position for e in await asyncio.to_thread(bus.read_all, 0)]

    assert asyncio.run(scenario()) == list(range(1, 11))


def test_a_stream_whose_messages_all_expired_raises_without_a_store(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    # With no store there is no gap to read from: a reader that had not read the lost
    # events is told so, and a reader at the head this bus saw reads on.
    async def scenario() -> tuple[BusHistoryTruncatedError, BusHistoryTruncatedError, list[int]]:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 10)
            async with NatsEventBus(nats_server.url, stream="T_GONE", subject_prefix="tgo") as bus:
                await Relay(store, bus).publish_pending()
                assert len(await asyncio.to_thread(bus.read_all, 0)) == 10
                await bus.io.call(bus.js.purge_stream("T_GONE"))  # as max_age would
                errors = []
                for after in (0, 4):
                    with pytest.raises(BusHistoryTruncatedError) as caught:
                        await asyncio.to_thread(bus.read_all, after)
                    errors.append(caught.value)
                at_head = [e.position for e in await asyncio.to_thread(bus.read_all, 10)]
                return errors[0], errors[1], at_head

    from_start, from_four, at_head = asyncio.run(scenario())
    assert (from_start.after_position, from_start.first_position) == (0, None)
    assert from_four.after_position == 4
    assert "retains no event at all" in str(from_four) and "store=store" in str(from_four)
    assert at_head == []


def test_a_forged_message_with_a_huge_position_moves_no_checkpoint(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    from eventstore.nats.envelope import encode_event, headers_for

    with SQLiteEventStore(tmp_path / "e.db") as store:
        append(store, 10)
        bus = NatsEventBus(
            nats_server.url, stream="T_FORGE", subject_prefix="tfg", store=store
        ).open()
        try:
            relay = Relay(store, bus)
            asyncio.run(relay.publish_pending())
            real = store.read_all()[-1]
            forged = type(real)(
                "forged-id",
                real.aggregate_id,
                real.aggregate_type,
                real.event_type,
                99,
                10**12,
                real.timestamp_micros,
                b"evil",
            )

            async def forge() -> None:
                nc = await nats.connect(nats_server.url)
                await nc.jetstream().publish(
                    "tfg.Account.x.y", encode_event(forged), headers=headers_for(forged)
                )
                await nc.close()

            asyncio.run(forge())
            with SQLiteReadModel(tmp_path / "read.db") as model:
                manager = ProjectionManager(bus)
                manager.register(Ledger(), read_model=model)
                manager.catch_up()
                assert model.load_checkpoint("ledger") == 10
                append(store, 5)
                asyncio.run(relay.publish_pending())  # resumes after the forged tail
                manager.catch_up()
                assert model.load_checkpoint("ledger") == 15
            assert_exactly_once(store, tmp_path / "read.db")
        finally:
            bus.close()


def test_sync_calls_from_the_io_thread_are_refused(nats_server: EmbeddedNATS) -> None:
    with NatsEventBus(nats_server.url, stream="T_IO", subject_prefix="tio") as bus:
        assert bus.io is not None

        async def inside() -> None:
            bus.read_all(0)

        with pytest.raises(RuntimeError, match="I/O thread"):
            bus.io.run(bus.io.call(inside()))


def test_bus_and_relay_authenticate_with_user_and_password(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with EmbeddedNATS(user="relay", password="s3cret") as server:
            with pytest.raises(ConnectionRefusedError, match="refused the credentials"):
                async with NatsEventBus(server.url, user="relay", password="wrong"):
                    pass
            with SQLiteEventStore(tmp_path / "e.db") as store:
                append(store, 5)
                async with NatsEventBus(
                    [server.url], user="relay", password="s3cret", store=store
                ) as bus:
                    assert await Relay(store, bus).publish_pending() == 5
                    assert len(await asyncio.to_thread(bus.read_all, 0)) == 5

    asyncio.run(scenario())


def test_a_stopped_relay_shows_as_lag_of_the_relay_and_of_projections(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        append(store, 10)
        with NatsEventBus(
            nats_server.url, stream="T_LAG", subject_prefix="tlag", store=store
        ) as bus:
            relay = Relay(store, bus)
            asyncio.run(relay.publish_pending())
            manager = ProjectionManager(bus)
            manager.register(Ledger(), read_model=SQLiteReadModel(tmp_path / "r.db"))
            manager.catch_up()
            append(store, 7)
            status = relay.status()
            assert (status.position, status.head, status.lag) == (10, 17, 7)
            assert status.lag_seconds >= 0 and not status.running
            assert manager.status("ledger").lag_positions == 7


RELAY_AND_READER = """
authorization {
  users = [
    { user: relay, password: relay-pw,
      permissions: { publish: ["events.>", "$JS.API.>"], subscribe: ["_INBOX.>", "events.>"] } }
    { user: reader, password: reader-pw,
      permissions: {
        publish: ["$JS.API.INFO", "$JS.API.STREAM.INFO.EVENTS", "$JS.API.DIRECT.GET.EVENTS",
                  "$JS.API.DIRECT.GET.EVENTS.>"],
        subscribe: ["_INBOX.>", "events.>"] } }
  ]
}
"""


def test_the_documented_permissions_let_the_reader_project_but_not_publish(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with EmbeddedNATS(extra_config=RELAY_AND_READER) as server:
            with SQLiteEventStore(tmp_path / "e.db") as store:
                append(store, 8)
                async with NatsEventBus(server.url, user="relay", password="relay-pw") as bus:
                    assert await Relay(store, bus).publish_pending() == 8
                async with NatsEventBus(
                    server.url, user="reader", password="reader-pw", store=store
                ) as reader:
                    got = await asyncio.to_thread(reader.read_all, 0)
                    assert [e.event_id for e in got] == [e.event_id for e in store.read_all()]
                nc = await nats.connect(server.url, user="reader", password="reader-pw")
                try:
                    with pytest.raises(Exception):  # noqa: B017 - denied: no ack ever comes
                        await nc.jetstream().publish("events.Account.x.y", b"forged", timeout=1)
                finally:
                    await nc.close()
                assert store.head_position() == 8

    asyncio.run(scenario())


def test_a_stale_second_relay_cannot_store_the_first_event_again_past_the_window(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            kw = {"stream": "T_EMPTY", "subject_prefix": "temp", "duplicate_window": 1.0}
            async with (
                NatsEventBus(nats_server.url, **kw) as a,
                NatsEventBus(nats_server.url, **kw) as b,
            ):
                stale = Relay(store, b)
                assert await stale.publish_pending() == 0  # saw the stream empty
                append(store, 6)
                assert await Relay(store, a).publish_pending() == 6
                await asyncio.sleep(1.3)  # past the duplicate window
                assert await stale.publish_pending() == 0
                info = await a.io.call(a.js.stream_info("T_EMPTY"))  # type: ignore[union-attr]
                assert info.state.messages == 6

    asyncio.run(scenario())


def test_a_running_projection_outlives_a_nats_restart_and_catches_up(
    own_nats: EmbeddedNATS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(store: SQLiteEventStore, model: SQLiteReadModel) -> None:
        async with NatsEventBus(own_nats.url, store=store) as bus:
            relay = Relay(store, bus)
            manager = ProjectionManager(bus)
            manager.register(Ledger(), read_model=model)
            tasks = [asyncio.create_task(relay.run()), asyncio.create_task(manager.run())]
            append(store, 20, per_append=2)
            own_nats.stop()
            append(store, 20, per_append=2)  # written while NATS is down
            await asyncio.sleep(0.5)  # the runner reads, fails, retries
            assert manager.status("ledger").lag_positions > 0
            own_nats.start()
            async with asyncio.timeout(20):
                while manager.status("ledger").lag_positions:
                    await asyncio.sleep(0.05)
            manager.stop()
            relay.stop()
            await asyncio.gather(*tasks)  # neither task died with the outage

    caplog.set_level(logging.INFO, logger="eventstore.projections")
    with SQLiteEventStore(tmp_path / "e.db") as store, SQLiteReadModel(tmp_path / "r.db") as model:
        asyncio.run(scenario(store, model))
        assert_exactly_once(store, tmp_path / "r.db")
    warnings = [r for r in caplog.records if r.name == "eventstore.projections"]
    assert [r.levelname for r in warnings] == ["WARNING", "INFO"]  # once per outage
    assert "not connected" in warnings[0].getMessage()
