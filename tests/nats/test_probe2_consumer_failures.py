"""A consumer-group worker outlives its handler's and its own failures; the I/O loop never dies.

Probe 2, defects 2, 5 and 7: a handler's ``SystemExit`` killed the bus's I/O loop (every
later bus call waited for ever); a failed dead-letter publish ended the worker silently;
a later worker's ``max_deliver``/``ack_wait`` were ignored. Real nats-server, real SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from pathlib import Path

import pytest

from eventstore import Event
from eventstore.nats import (
    BusLoopStoppedError,
    ConsumerConfigMismatchError,
    ConsumerFilterMismatchError,
    EmbeddedNATS,
    NatsEventBus,
    Relay,
)
from eventstore.nats.connection import IOThread
from eventstore.sqlite import SQLiteEventStore
from tests.support.busproof import DEPOSITED, append
from tests.support.busproof import wait_until_async as _wait


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_handler_raising_system_exit_fails_that_event_and_the_bus_keeps_serving(
    nats_server: EmbeddedNATS, tmp_path: Path, kind: str
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 3, aggregates=3)
            events = store.read_all()
            poison = events[0].event_id
            stream = f"P2_EXIT_{kind.upper()}"
            async with NatsEventBus(nats_server.url, stream=stream, subject_prefix=stream) as bus:
                await Relay(store, bus).publish_pending()
                handled: list[str] = []

                def plain(event: Event) -> None:
                    if event.event_id == poison:
                        sys.exit("legacy mailer gave up")
                    handled.append(event.event_id)

                async def coroutine(event: Event) -> None:
                    plain(event)

                handler = plain if kind == "plain" else coroutine
                async with await bus.subscribe(
                    "mailer", handler, max_deliver=2, backoff=(0.05,), ack_wait=5
                ) as sub:
                    await _wait(lambda: sub.dead_lettered == 1 and len(handled) == 2, 15, "dlq")
                    assert sub.is_running
                letters = await asyncio.wait_for(bus.dead_letters("mailer"), 10)
                assert [(d.event_id, d.error_type) for d in letters] == [(poison, "SystemExit")]
                assert "legacy mailer gave up" in letters[0].message
                # the bus's loop still serves synchronous readers
                read = await asyncio.wait_for(asyncio.to_thread(bus.read_all, 0), 10)
                assert [e.event_id for e in read] == [e.event_id for e in events]

    asyncio.run(scenario())


def test_a_system_exit_escaping_onto_the_io_loop_neither_stops_it_nor_hangs_later_calls() -> None:
    io = IOThread("p2-io")
    try:

        def leave() -> None:
            sys.exit("a callback that exits")

        io.loop.call_soon_threadsafe(leave)

        async def answer() -> str:
            return "still here"

        assert io.run(answer(), timeout=5) == "still here"
    finally:
        io.stop()


def test_the_io_threads_bounded_wait_passes_on_a_coroutines_own_timeout_at_once() -> None:
    io = IOThread("p2-io-timeout")
    try:

        async def times_out() -> None:
            raise TimeoutError("the coroutine's own")

        started = time.monotonic()
        with pytest.raises(TimeoutError, match="the coroutine's own"):
            io.run(times_out())
        assert time.monotonic() - started < 1
    finally:
        io.stop()


def test_a_stopped_io_thread_fails_its_waiters_at_once_instead_of_hanging() -> None:
    io = IOThread("p2-io-stopped")
    outcome: list[BaseException] = []

    def wait_long() -> None:
        try:
            io.run(asyncio.sleep(30))
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_long)
    waiter.start()
    threading.Event().wait(0.3)  # the sleep is running on the loop
    io.stop()
    waiter.join(5)
    assert not waiter.is_alive()
    assert [type(e) for e in outcome] == [BusLoopStoppedError]
    assert "p2-io-stopped" in str(outcome[0])
    with pytest.raises(BusLoopStoppedError):
        io.run(asyncio.sleep(0), timeout=1)


def test_a_worker_whose_dead_letter_cannot_be_published_logs_it_and_goes_on(
    own_nats: EmbeddedNATS, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The dead-letter stream is gone (as when a deployment lacks the permission to publish
    there): publishing the dead letter fails, and the worker still handles what follows."""

    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 1, aggregates=1)
            poison = store.read_all()[0].event_id
            async with NatsEventBus(
                own_nats.url, stream="P2_DLQFAIL", subject_prefix="p2df", store=store
            ) as bus:
                relay = Relay(store, bus)
                await relay.publish_pending()
                handled: list[str] = []

                def handle(event: Event) -> None:
                    if event.event_id == poison:
                        raise RuntimeError("cannot mail")
                    handled.append(event.event_id)

                async with await bus.subscribe("mailer", handle, max_deliver=1, ack_wait=2) as sub:
                    io = bus.io
                    assert io is not None
                    await io.call(bus.js.delete_stream("P2_DLQFAIL~DLQ"))
                    await _wait(lambda: sub.failed >= 1, 10, "the poison event's failure")
                    append(store, 2, aggregates=2)
                    later = [e.event_id for e in store.read_all()[1:]]
                    await relay.publish_pending()
                    await _wait(lambda: sorted(handled) == sorted(later), 10, "later events")
                    assert sub.is_running and sub.dead_lettered == 0

    with caplog.at_level(logging.WARNING, logger="eventstore.nats.consumers"):
        asyncio.run(scenario())
    failed = [r.getMessage() for r in caplog.records if "dead-lettering of event" in r.getMessage()]
    assert failed and "delivers it again" in failed[0]


def test_a_worker_with_another_max_deliver_or_ack_wait_is_refused_naming_both(
    nats_server: EmbeddedNATS,
) -> None:
    async def scenario() -> None:
        async with NatsEventBus(nats_server.url, stream="P2_CFG", subject_prefix="p2cfg") as bus:
            async with await bus.subscribe("mailer", lambda e: None, max_deliver=1, ack_wait=30):
                with pytest.raises(ConsumerConfigMismatchError) as caught:
                    await bus.subscribe(
                        "mailer", lambda e: None, max_deliver=4, backoff=(0.1,), ack_wait=5
                    )
                error = caught.value
                assert error.consumer == "mailer"
                assert error.differences == {"max_deliver": (1, 4), "ack_wait": (30.0, 5)}
                assert "max_deliver 1 (this worker: 4)" in str(error)
                assert "ack_wait 30 s (this worker: 5 s)" in str(error)
                assert "delete_consumer('mailer')" in str(error)
                # the same settings join the group
                async with await bus.subscribe(
                    "mailer", lambda e: None, max_deliver=1, ack_wait=30
                ):
                    pass
                # other filters are the same kind of refusal
                with pytest.raises(ConsumerFilterMismatchError) as filtered:
                    await bus.subscribe("mailer", lambda e: None, event_types=[DEPOSITED])
                assert isinstance(filtered.value, ConsumerConfigMismatchError)
                assert "subjects" in filtered.value.differences
            await bus.delete_consumer("mailer")
            # after deleting the group, new settings are taken
            async with await bus.subscribe("mailer", lambda e: None, max_deliver=4, ack_wait=5):
                pass
            await bus.delete_consumer("mailer")

    asyncio.run(scenario())


def test_a_handler_raising_keyboard_interrupt_stops_its_worker_and_hands_the_event_back(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SQLiteEventStore(tmp_path / "e.db") as store:
            append(store, 3, aggregates=3)
            events = [e.event_id for e in store.read_all()]
            async with NatsEventBus(
                nats_server.url, stream="P2_KBI", subject_prefix="p2kbi"
            ) as bus:
                await Relay(store, bus).publish_pending()

                def interrupted(event: Event) -> None:
                    raise KeyboardInterrupt

                first = await bus.subscribe("mailer", interrupted, max_deliver=1, ack_wait=30)
                await _wait(lambda: not first.is_running, 10, "the interrupted worker to stop")
                handled: list[str] = []
                async with await bus.subscribe(
                    "mailer", lambda e: handled.append(e.event_id), max_deliver=1, ack_wait=30
                ):
                    # handed back at once (no ack_wait), and never dead-lettered
                    await _wait(lambda: sorted(handled) == sorted(events), 10, "every event")
                await first.stop()
                assert first.dead_lettered == 0 and first.failed == 0
                assert await bus.dead_letters("mailer") == []

    asyncio.run(scenario())
