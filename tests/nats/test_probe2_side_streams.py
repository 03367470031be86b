"""Side streams of consumer groups (retry, dead letters, advisories) never meet another bus's.

Probe 2, defect 1: under the per-tenant recipe (docs/service-edge.md) tenant ``acme``'s
side streams were named and captured exactly like tenant ``acme_dlq``'s event stream,
so ``acme``'s dead letters reached ``acme_dlq``'s handlers. Real nats-server, real
SQLite stores (``TenantStores``), nothing mocked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.js import api

from eventstore import Event
from eventstore.nats import (
    EmbeddedNATS,
    NatsEventBus,
    OldSideStreamsError,
    Relay,
    SideStreamConflictError,
)
from eventstore.nats.envelope import MSG_ID, encode_event
from eventstore.sqlite import SQLiteEventStore
from eventstore.tenancy import TenantStores
from tests.support.busproof import append
from tests.support.busproof import wait_until_async as _wait


def _tenant_bus(url: str, stores: TenantStores, tenant: str) -> NatsEventBus:
    """The recipe of docs/service-edge.md."""
    return NatsEventBus(
        url,
        stream=f"ES_{tenant.upper()}",
        subject_prefix=f"es.{tenant}",
        store=stores.for_tenant(tenant),
    )


def test_a_tenants_dead_letters_never_reach_the_tenant_named_like_its_side_stream(
    own_nats: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        stores = TenantStores(tmp_path)
        try:
            append(stores.for_tenant("acme"), 1, aggregates=1)
            append(stores.for_tenant("acme_dlq"), 1, aggregates=1)
            acme_event = stores.for_tenant("acme").read_all()[0]
            own_event = stores.for_tenant("acme_dlq").read_all()[0]
            async with (
                _tenant_bus(own_nats.url, stores, "acme_dlq") as other,
                _tenant_bus(own_nats.url, stores, "acme") as acme,
            ):
                await Relay(stores.for_tenant("acme"), acme).publish_pending()

                def mailer(event: Event) -> None:
                    raise RuntimeError("mail server down")

                async with await acme.subscribe("mailer", mailer, max_deliver=1) as sub:
                    await _wait(lambda: sub.dead_lettered == 1, 10, "acme's dead letter")
                letters = await acme.dead_letters("mailer")
                assert [d.event_id for d in letters] == [acme_event.event_id]

                got: list[Event] = []
                async with await other.subscribe("billing", got.append):
                    await Relay(stores.for_tenant("acme_dlq"), other).publish_pending()
                    await _wait(lambda: len(got) >= 1, 10, "acme_dlq's own event")
                    await asyncio.sleep(0.5)  # time for anything else to arrive
                assert [e.event_id for e in got] == [own_event.event_id]
                info = await other.io.call(other.js.stream_info("ES_ACME_DLQ"))  # type: ignore[union-attr]
                assert info.config.subjects == ["es.acme_dlq.>"]
                assert info.state.messages == 1, "only acme_dlq's own event is in its stream"
        finally:
            stores.close()

    asyncio.run(scenario())


def test_a_stream_named_like_a_side_stream_but_capturing_other_subjects_is_refused(
    nats_server: EmbeddedNATS,
) -> None:
    async def scenario() -> None:
        async with NatsEventBus(nats_server.url, stream="P2_CONF", subject_prefix="p2conf") as bus:
            await bus.io.call(  # type: ignore[union-attr]
                bus.js.add_stream(api.StreamConfig(name="P2_CONF~DLQ", subjects=["elsewhere.>"]))
            )
            try:
                with pytest.raises(SideStreamConflictError) as caught:
                    await bus.subscribe("mailer", lambda e: None)
                error = caught.value
                assert error.stream == "P2_CONF~DLQ" and error.actual == ["elsewhere.>"]
                assert error.expected == ["p2conf~dlq.>"]
                assert "P2_CONF~DLQ" in str(error) and "elsewhere.>" in str(error)
            finally:
                await bus.io.call(bus.js.delete_stream("P2_CONF~DLQ"))  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_stream_names_and_prefixes_that_could_spell_a_side_stream_are_refused() -> None:
    with pytest.raises(ValueError, match="'~'"):
        NatsEventBus("nats://127.0.0.1:4222", stream="ES~DLQ")
    with pytest.raises(ValueError, match="'~'"):
        NatsEventBus("nats://127.0.0.1:4222", subject_prefix="es~dlq")
    with pytest.raises(ValueError, match="empty token"):
        NatsEventBus("nats://127.0.0.1:4222", subject_prefix="es..x")
    with pytest.raises(ValueError, match="stream name"):
        NatsEventBus("nats://127.0.0.1:4222", stream="ES.ACME")


def _old_layout(bus: NatsEventBus, stream: str, prefix: str, event: Event) -> list[object]:
    """What a release before 2026-12-02 left: a dead letter in <stream>_DLQ, a retry not yet
    handled in <stream>_RETRY (with the group's retry consumer), an advisory stream."""
    js = bus.js
    envelope = encode_event(event)
    return [
        js.add_stream(api.StreamConfig(name=f"{stream}_DLQ", subjects=[f"{prefix}_dlq.>"])),
        js.add_stream(api.StreamConfig(name=f"{stream}_RETRY", subjects=[f"{prefix}_retry.>"])),
        js.add_stream(
            api.StreamConfig(
                name=f"{stream}_ADVISORIES",
                subjects=[
                    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*",
                    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}_RETRY.*",
                ],
            )
        ),
        js.publish(
            f"{prefix}_dlq.mailer",
            envelope,
            headers={
                MSG_ID: f"mailer:{event.event_id}",
                "Eventstore-Consumer": "mailer",
                "Eventstore-Deliveries": "3",
                "Eventstore-Error-Type": "ValueError",
                "Eventstore-Error": "ValueError: old failure",
            },
        ),
        js.add_consumer(
            f"{stream}_RETRY",
            api.ConsumerConfig(
                durable_name="mailer",
                ack_policy=api.AckPolicy.EXPLICIT,
                filter_subject=f"{prefix}_retry.mailer",
            ),
        ),
        js.publish(f"{prefix}_retry.mailer", envelope, headers={"Eventstore-Consumer": "mailer"}),
    ]


def test_side_streams_of_the_old_layout_are_refused_until_moved_then_nothing_is_lost(
    own_nats: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 3, aggregates=1)
            events = store.read_all()
            async with NatsEventBus(own_nats.url, stream="OLD", subject_prefix="old") as bus:
                await Relay(store, bus).publish_pending()
                for step in _old_layout(bus, "OLD", "old", events[1]):
                    await bus.io.call(step)  # type: ignore[arg-type, union-attr]

                with pytest.raises(OldSideStreamsError) as caught:
                    await bus.subscribe("mailer", lambda e: None)
                assert set(caught.value.found) == {"OLD_DLQ", "OLD_RETRY"}
                assert "move_old_side_streams" in str(caught.value)
                with pytest.raises(OldSideStreamsError):
                    await bus.dead_letters("mailer")

                moved = await bus.move_old_side_streams()
                assert moved == {"dead_letters": 1, "advisories": 0, "retries": 1}
                letters = await bus.dead_letters("mailer")
                assert [(d.event_id, d.deliveries, d.error_type) for d in letters] == [
                    (events[1].event_id, 3, "ValueError")
                ]
                names = await bus.io.call(bus.js.streams_info())  # type: ignore[union-attr]
                left = {s.config.name for s in names}
                assert not left & {"OLD_DLQ", "OLD_RETRY", "OLD_ADVISORIES"}

                handled: list[str] = []
                async with await bus.subscribe("mailer", lambda e: handled.append(e.event_id)):
                    # the three events, and the retry that was pending in the old stream
                    await _wait(lambda: len(handled) == 4, 10, "events and the moved retry")
                assert sorted(handled) == sorted(
                    [e.event_id for e in events] + [events[1].event_id]
                )
                # a second move finds nothing to do
                assert await bus.move_old_side_streams() == {
                    "dead_letters": 0,
                    "advisories": 0,
                    "retries": 0,
                }

    asyncio.run(scenario())


def test_an_empty_old_advisory_stream_is_replaced_and_a_tenants_lookalike_stream_kept(
    own_nats: EmbeddedNATS,
) -> None:
    """The old advisory stream names this bus's stream in its subjects: certainly its own,
    so an empty one is removed. An old-named dead-letter stream with none of this bus's
    messages may be a tenant's event stream (``acme_dlq``'s): it is left alone."""

    async def scenario() -> None:
        async with NatsEventBus(own_nats.url, stream="ES_ACME", subject_prefix="es.acme") as bus:
            js = bus.js
            io = bus.io
            assert io is not None
            await io.call(
                js.add_stream(
                    api.StreamConfig(
                        name="ES_ACME_ADVISORIES",
                        subjects=[
                            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ES_ACME.*",
                            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ES_ACME_RETRY.*",
                        ],
                    )
                )
            )
            await io.call(
                js.add_stream(api.StreamConfig(name="ES_ACME_DLQ", subjects=["es.acme_dlq.>"]))
            )
            await io.call(js.publish("es.acme_dlq.Account.Opened.a-1", b"tenant acme_dlq's"))
            async with await bus.subscribe("mailer", lambda e: None):
                pass
            names = {s.config.name for s in await io.call(js.streams_info())}
            assert "ES_ACME_ADVISORIES" not in names and "ES_ACME~ADVISORIES" in names
            kept = await io.call(js.stream_info("ES_ACME_DLQ"))
            assert kept.state.messages == 1

    asyncio.run(scenario())


def test_a_group_terminates_a_message_that_is_not_an_event_of_its_stream_unhandled(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    """Whatever lands in the stream's subjects without being one of its events (a dead letter
    of another bus, a forged envelope) never reaches the handler."""

    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 2, aggregates=1)
            events = store.read_all()
            async with NatsEventBus(
                nats_server.url, stream="P2_GUARD", subject_prefix="p2g"
            ) as bus:
                await Relay(store, bus).publish_pending()
                io = bus.io
                assert io is not None
                foreign = encode_event(events[0])
                # an envelope on a subject of one token (as another bus's dead letters were)
                await io.call(bus.js.publish("p2g.mailer", foreign, headers={MSG_ID: "x-1"}))
                # the right subject, but no position header: not published by a relay
                subject = "p2g.Account.testbank%2Ev1%2EMoneyDeposited.acc-0"
                await io.call(bus.js.publish(subject, foreign, headers={MSG_ID: "x-2"}))
                handled: list[str] = []
                async with await bus.subscribe(
                    "audit", lambda e: handled.append(e.event_id)
                ) as sub:
                    await _wait(lambda: sub.refused == 2 and len(handled) == 2, 10, "the guard")
                    await asyncio.sleep(0.3)
                assert handled == [e.event_id for e in events]

    asyncio.run(scenario())


def test_the_advisory_stream_is_named_with_the_separator(nats_server: EmbeddedNATS) -> None:
    async def scenario() -> None:
        async with NatsEventBus(nats_server.url, stream="P2_NAMES", subject_prefix="p2n") as bus:
            async with await bus.subscribe("g", lambda e: None):
                pass
            io = bus.io
            assert io is not None
            infos = {s.config.name: s.config.subjects for s in await io.call(bus.js.streams_info())}
            assert infos["P2_NAMES~RETRY"] == ["p2n~retry.>"]
            assert infos["P2_NAMES~DLQ"] == ["p2n~dlq.>"]
            assert sorted(infos["P2_NAMES~ADVISORIES"]) == sorted(
                [
                    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.P2_NAMES.*",
                    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.P2_NAMES~RETRY.*",
                ]
            )

    asyncio.run(scenario())
