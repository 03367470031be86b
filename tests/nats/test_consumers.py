"""Consumer groups: work split between workers, redelivery with backoff, dead letters."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from eventstore import Event
from eventstore.nats import (
    ConsumerFilterMismatchError,
    EmbeddedNATS,
    NatsEventBus,
    RedeliveryConfigError,
    Relay,
)
from eventstore.sqlite import SQLiteEventStore
from tests.support.busproof import DEPOSITED, append
from tests.support.busproof import wait_until_async as _wait


def test_two_workers_share_a_group_and_handle_each_event_once(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 200)
            async with NatsEventBus(nats_server.url, stream="T_GRP", subject_prefix="tgrp") as bus:
                await Relay(store, bus).publish_pending()
                seen: dict[str, list[str]] = {"a": [], "b": []}
                lock = threading.Lock()

                def worker(tag: str):  # type: ignore[no-untyped-def]
                    def handle(event: Event) -> None:
                        with lock:
                            seen[tag].append(event.event_id)

                    return handle

                async def async_worker(event: Event) -> None:
                    seen["b"].append(event.event_id)

                a = await bus.subscribe("ledger", worker("a"), batch=10)
                b = await bus.subscribe("ledger", async_worker, batch=10)
                async with a, b:
                    await _wait(lambda: len(seen["a"]) + len(seen["b"]) >= 200, 20, "200 events")
                    await asyncio.sleep(0.3)
                both = seen["a"] + seen["b"]
                assert sorted(both) == sorted(e.event_id for e in store.read_all())
                assert seen["a"] and seen["b"], "the work must be split"

    asyncio.run(scenario())


def test_poison_events_end_in_dead_letters_and_come_back_through_the_retry_subject(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 30)
            events = store.read_all()
            poison = {events[4].event_id, events[17].event_id}
            async with NatsEventBus(nats_server.url, stream="T_DLQ", subject_prefix="tdlq") as bus:
                await Relay(store, bus).publish_pending()
                handled: list[str] = []
                attempts: dict[str, int] = {}
                healed = False

                async def handle(event: Event) -> None:
                    attempts[event.event_id] = attempts.get(event.event_id, 0) + 1
                    if event.event_id in poison and not healed:
                        raise ValueError(f"cannot mail {event.aggregate_id}\r\nsecond line")
                    handled.append(event.event_id)

                async with await bus.subscribe(
                    "mailer", handle, max_deliver=3, backoff=(0.05, 0.1), ack_wait=5
                ) as sub:
                    await _wait(lambda: sub.dead_lettered == 2 and len(handled) == 28, 20, "dlq")
                    letters = await bus.dead_letters("mailer")
                    assert {d.event_id for d in letters} == poison
                    assert all(d.deliveries == 3 and d.consumer == "mailer" for d in letters)
                    assert all(d.error_type == "ValueError" for d in letters)
                    assert "second line" in letters[0].message
                    assert letters[0].event is not None and letters[0].event.data
                    assert all(attempts[p] == 3 for p in poison)
                    healed = True
                    first = sorted(poison)[0]
                    await bus.redeliver("mailer", first)
                    await _wait(lambda: first in handled, 10, "the redelivered event")
                assert sorted(handled) == sorted(
                    [e.event_id for e in events if e.event_id not in poison] + [first]
                )
                with pytest.raises(LookupError, match="no dead letter"):
                    await bus.redeliver("mailer", "nope")

    asyncio.run(scenario())


def test_backoff_longer_than_max_deliver_allows_is_refused(nats_server: EmbeddedNATS) -> None:
    async def scenario() -> None:
        async with NatsEventBus(nats_server.url, stream="T_BO", subject_prefix="tbo") as bus:
            with pytest.raises(RedeliveryConfigError) as caught:
                await bus.subscribe("x", lambda e: None, max_deliver=2, backoff=(1.0, 5.0))
            assert caught.value.max_deliver == 2 and "max_deliver" in str(caught.value)

    asyncio.run(scenario())


def test_a_worker_with_other_filters_is_refused_naming_both(nats_server: EmbeddedNATS) -> None:
    async def scenario() -> None:
        async with NatsEventBus(nats_server.url, stream="T_FLT", subject_prefix="tflt") as bus:
            async with await bus.subscribe("audit", lambda e: None, event_types=[DEPOSITED]):
                with pytest.raises(ConsumerFilterMismatchError) as caught:
                    await bus.subscribe("audit", lambda e: None, aggregate_types=["Account"])
            error = caught.value
            assert error.existing == ["tflt.*.testbank%2Ev1%2EMoneyDeposited.*"]
            assert error.requested == ["tflt.Account.*.*"]
            assert "tflt.Account" in str(error) and "MoneyDeposited" in str(error)
            await bus.delete_consumer("audit")

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_max_deliveries_advisory_is_the_backstop_when_workers_never_finish(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    """Workers that hang on their last deliveries (as if killed) never dead-letter the event:
    the server's advisory, kept in a stream, still makes it a dead letter."""

    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 3)
            poison = store.read_all()[1].event_id
            async with NatsEventBus(nats_server.url, stream="T_ADV", subject_prefix="tadv") as bus:
                await Relay(store, bus).publish_pending()
                attempts: list[int] = []

                async def handle(event: Event) -> None:
                    if event.event_id == poison:
                        attempts.append(1)
                        if len(attempts) >= 3:
                            await asyncio.sleep(4)  # hangs past ack_wait, like a dead worker
                        raise RuntimeError("poison")

                subs = [
                    await bus.subscribe("adv", handle, max_deliver=3, ack_wait=0.3, batch=1)
                    for _ in range(3)
                ]
                try:

                    async def advised() -> bool:
                        letters = await bus.dead_letters("adv")
                        return any(d.error_type == "MaxDeliveries" for d in letters)

                    deadline = asyncio.get_running_loop().time() + 15
                    while not await advised():
                        assert asyncio.get_running_loop().time() < deadline, "no advisory"
                        await asyncio.sleep(0.2)
                    letters = await bus.dead_letters("adv")
                    assert [d.event_id for d in letters] == [poison]
                    assert letters[0].deliveries == 4 and letters[0].consumer == "adv"
                finally:
                    for sub in subs:
                        await sub.stop()
                # the hung workers dead-letter it too when they fail: still one entry
                assert [d.event_id for d in await bus.dead_letters("adv")] == [poison]

    asyncio.run(scenario())
