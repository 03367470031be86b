"""Following the log: position order, live wake-ups, polling, stopping (sync and async)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from eventstore import CommitSource, Event, EventSource, NewEvent, Upcasters, new_event_id
from eventstore.core.follow import follow
from eventstore.sqlite import SQLiteEventStore

DEPOSIT = "testbank.v1.MoneyDeposited"
OPENED = "testbank.v1.AccountOpened"


def append(store: SQLiteEventStore, aggregate_id: str, count: int = 1, kind: str = DEPOSIT) -> None:
    version = store.stream_version(aggregate_id)
    store.append(
        aggregate_id,
        "Account",
        version,
        [NewEvent(new_event_id(), kind, b"") for _ in range(count)],
    )


@pytest.fixture
def store(db_path: Path):  # type: ignore[no-untyped-def]
    with SQLiteEventStore(db_path) as s:
        yield s


def test_follow_yields_stored_events_after_the_position_in_order(store: SQLiteEventStore) -> None:
    append(store, "a", 5)
    with store.follow(2) as sub:
        got = [next(sub).position for _ in range(3)]
    assert got == [3, 4, 5]


def test_a_commit_in_this_process_wakes_a_waiting_follower_at_once(
    store: SQLiteEventStore,
) -> None:
    received: list[float] = []
    with store.follow(0, poll_interval=30) as sub:

        def reader() -> None:
            for _event in sub:
                received.append(time.monotonic())
                return

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.2)
        committed = time.monotonic()
        append(store, "a")
        thread.join(5)
    assert not thread.is_alive()
    assert received and received[0] - committed < 1.0  # far below the 30 s poll interval


def test_commits_through_another_store_object_are_seen_by_polling(db_path: Path) -> None:
    with (
        SQLiteEventStore(db_path) as reader,
        SQLiteEventStore(db_path) as writer,
        reader.follow(0, poll_interval=0.05) as sub,
    ):
        append(writer, "a", 3)
        got: list[int] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got.extend(e.position for e in sub.next_batch(timeout=0.5))
    assert got == [1, 2, 3]


def test_follow_never_skips_or_repeats_with_concurrent_writer_threads(
    store: SQLiteEventStore,
) -> None:
    writers, per_writer = 4, 60

    def write(n: int) -> None:
        for i in range(per_writer):
            append(store, f"w{n}", 1 + i % 2)

    expected = writers * sum(1 + i % 2 for i in range(per_writer))
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    positions: list[int] = []
    with store.follow(0, poll_interval=0.05, page_size=7) as sub:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(positions) < expected and time.monotonic() < deadline:
            positions.extend(e.position for e in sub.next_batch(timeout=0.5))
        for t in threads:
            t.join(10)
        positions.extend(e.position for e in sub.next_batch(timeout=0.2))
    assert positions == list(range(1, expected + 1))


def test_follow_with_event_types_yields_only_those(store: SQLiteEventStore) -> None:
    append(store, "a", 1, OPENED)
    append(store, "a", 2, DEPOSIT)
    append(store, "b", 1, OPENED)
    with store.follow(0, event_types=[OPENED]) as sub:
        got = [(e.aggregate_id, e.event_type) for e in sub.next_batch(timeout=1)]
    assert got == [("a", OPENED), ("b", OPENED)]


def test_stop_from_another_thread_ends_a_waiting_for_loop_promptly(
    store: SQLiteEventStore,
) -> None:
    sub = store.follow(0, poll_interval=30)
    finished = threading.Event()

    def reader() -> None:
        for _event in sub:
            pass
        finished.set()

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.1)
    sub.stop()
    assert finished.wait(2)
    thread.join(2)


def test_leaving_the_with_block_ends_iteration(store: SQLiteEventStore) -> None:
    append(store, "a", 2)
    with store.follow(0) as sub:
        pass
    assert sub.stopped
    assert list(sub) == []


def test_next_batch_returns_nothing_after_its_timeout(store: SQLiteEventStore) -> None:
    with store.follow(0, poll_interval=0.05) as sub:
        started = time.monotonic()
        assert sub.next_batch(timeout=0.2) == []
        assert 0.15 < time.monotonic() - started < 2


def test_position_lets_a_new_follower_continue_where_the_last_stopped(
    store: SQLiteEventStore,
) -> None:
    append(store, "a", 4)
    with store.follow(0) as first:
        [next(first) for _ in range(2)]
    with store.follow(first.position) as second:
        assert [e.position for e in second.next_batch(timeout=1)] == [3, 4]


def test_async_for_yields_events_as_they_commit(store: SQLiteEventStore) -> None:
    async def main() -> list[int]:
        got: list[int] = []
        async with store.follow(0, poll_interval=30) as sub:

            async def consume() -> None:
                async for event in sub:
                    got.append(event.position)
                    if len(got) == 3:
                        return

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.05)
            for _ in range(3):
                append(store, "a")  # in the loop's thread: wakes the waiting consumer
                await asyncio.sleep(0)
            await asyncio.wait_for(task, 5)
        return got

    assert asyncio.run(main()) == [1, 2, 3]


def test_async_follower_is_woken_by_a_commit_from_another_thread(
    store: SQLiteEventStore,
) -> None:
    async def main() -> float:
        async with store.follow(0, poll_interval=30) as sub:
            timer = threading.Timer(0.2, append, args=(store, "a"))
            started = time.monotonic()
            timer.start()
            event = await asyncio.wait_for(sub.__anext__(), 5)
            assert event.position == 1
            return time.monotonic() - started

    assert asyncio.run(main()) < 2


def test_stop_ends_a_waiting_async_for(store: SQLiteEventStore) -> None:
    async def main() -> None:
        sub = store.follow(0, poll_interval=30)

        async def consume() -> None:
            async for _event in sub:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        sub.stop()
        await asyncio.wait_for(task, 2)

    asyncio.run(main())


def test_follow_refuses_a_negative_position(store: SQLiteEventStore) -> None:
    with pytest.raises(ValueError, match="after_position must be >= 0"):
        store.follow(-1)


def test_next_batch_async_returns_what_commits_while_it_awaits(store: SQLiteEventStore) -> None:
    async def main() -> list[int]:
        async with store.follow(0, poll_interval=30) as sub:
            timer = threading.Timer(0.1, append, args=(store, "a", 3))
            timer.start()
            batch = await sub.next_batch_async(timeout=5)
            timer.join()
            return [e.position for e in batch]

    assert asyncio.run(main()) == [1, 2, 3]


def test_next_batch_async_hands_out_at_most_max_count_and_keeps_the_rest(
    store: SQLiteEventStore,
) -> None:
    append(store, "a", 3)

    async def main() -> tuple[list[int], list[int]]:
        async with store.follow(0) as sub:
            first = await sub.next_batch_async(timeout=1, max_count=2)
            rest = await sub.next_batch_async(timeout=1)
        return [e.position for e in first], [e.position for e in rest]

    assert asyncio.run(main()) == ([1, 2], [3])


def test_next_batch_async_returns_nothing_after_its_timeout(store: SQLiteEventStore) -> None:
    async def main() -> tuple[list[Event], float]:
        async with store.follow(0, poll_interval=0.05) as sub:
            started = time.monotonic()
            batch = await sub.next_batch_async(timeout=0.2)
            return batch, time.monotonic() - started

    batch, waited = asyncio.run(main())
    assert batch == []
    assert 0.15 < waited < 2


class ReadOnlyLog:
    """An event log that does not announce its commits (as one read from another process)."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self._store = store

    def read_all(
        self,
        after_position: int = 0,
        *,
        limit: int | None = None,
        event_types: list[str] | None = None,
    ) -> list[Event]:
        return self._store.read_all(after_position, limit=limit, event_types=event_types)

    def head_position(self) -> int:
        return self._store.head_position()


def test_a_log_that_does_not_announce_commits_is_followed_by_polling(
    store: SQLiteEventStore,
) -> None:
    log = ReadOnlyLog(store)
    assert isinstance(log, EventSource) and not isinstance(log, CommitSource)
    with follow(log, poll_interval=0.05) as sub:
        assert not sub.is_live
        timer = threading.Timer(0.2, append, args=(store, "a", 2))
        timer.start()
        got = [e.position for e in sub.next_batch(timeout=5)]
        timer.join()
    assert got == [1, 2]


def test_a_store_that_announces_commits_is_followed_live(store: SQLiteEventStore) -> None:
    assert isinstance(store, CommitSource)
    with store.follow(0) as sub:
        assert sub.is_live


class UpcasterBrokenAt:
    """Upcasts OPENED into DEPOSIT, and raises on the event at ``position`` until fixed."""

    def __init__(self, position: int) -> None:
        self.position = position
        self.is_broken = True
        self.upcasters = Upcasters()
        self.upcasters.register(OPENED, self.upcast, to=DEPOSIT)

    def upcast(self, event: Event) -> Event:
        if self.is_broken and event.position == self.position:
            raise ValueError(f"upcaster bug at position {event.position}")
        return event.with_payload(DEPOSIT, event.data)


def test_an_upcaster_that_raises_loses_no_event_of_the_page(store: SQLiteEventStore) -> None:
    append(store, "a", 5, kind=OPENED)
    broken = UpcasterBrokenAt(3)
    with store.follow(0, upcasters=broken.upcasters) as sub:
        before = [e.position for e in sub.next_batch(timeout=0.1)]
        with pytest.raises(ValueError, match="position 3"):
            sub.next_batch(timeout=0.1)
        stopped_at = (sub.position, sub.scanned_position)
        broken.is_broken = False
        after = [e.position for e in sub.next_batch(timeout=0.1)]
    assert before == [1, 2]
    assert stopped_at == (2, 2)
    assert after == [3, 4, 5]


def test_an_upcaster_that_raises_on_the_first_event_raises_at_every_read_until_fixed(
    store: SQLiteEventStore,
) -> None:
    append(store, "a", 3, kind=OPENED)
    broken = UpcasterBrokenAt(1)
    with store.follow(0, upcasters=broken.upcasters) as sub:
        for _ in range(2):
            with pytest.raises(ValueError, match="position 1"):
                sub.next_batch(timeout=0.1)
        stopped_at = sub.scanned_position
        broken.is_broken = False
        got = [e.position for e in sub.next_batch(timeout=0.1)]
    assert stopped_at == 0
    assert got == [1, 2, 3]


def test_an_upcaster_that_raises_after_events_the_filter_dropped_raises_at_once(
    store: SQLiteEventStore,
) -> None:
    append(store, "a", 4, kind=OPENED)
    is_broken = True

    def upcast(event: Event) -> Event:  # registered without to=: it may make any type
        if event.position < 3:
            return event.with_payload("testbank.v1.Other", event.data)  # then dropped
        if is_broken and event.position == 3:
            raise ValueError("upcaster bug at position 3")
        return event.with_payload(DEPOSIT, event.data)

    upcasters = Upcasters()
    upcasters.register(OPENED, upcast)
    with store.follow(0, upcasters=upcasters, event_types=[DEPOSIT]) as sub:
        with pytest.raises(ValueError, match="position 3"):
            sub.next_batch(timeout=5)  # at once, not after the timeout
        stopped_at = sub.scanned_position
        is_broken = False
        got = [e.position for e in sub.next_batch(timeout=0.1)]
    assert stopped_at == 2
    assert got == [3, 4]
