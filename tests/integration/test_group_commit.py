"""Group commit on a real SQLite file: mixed outcomes in one group, failed commits, close,
and many threads and tasks at once losing nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import timedelta

import pytest

from eventstore import (
    ConcurrencyError,
    NewEvent,
    StoreClosedError,
    StreamAppend,
    UniqueConstraint,
    UniqueConstraintError,
    new_event_id,
)
from eventstore.core.errors import StorageFullError
from eventstore.core.events import encode_constraints
from eventstore.core.ports import AsyncAppendMixin, append_async_default
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite import group_commit
from eventstore.sqlite.group_commit import Member
from tests.support.bank import account_repository


def _event(data: bytes = b"", constraints: tuple[UniqueConstraint, ...] = ()) -> NewEvent:
    return NewEvent(new_event_id(), "t.E", data, constraints=constraints)


def _member(
    aggregate_id: str,
    expected: int,
    *,
    command_id: str | None = None,
    events: list[NewEvent] | None = None,
) -> Member:
    events = events if events is not None else [_event()]
    encoded = [(e.metadata.to_json(), encode_constraints(e.constraints)) for e in events]
    return Member(aggregate_id, "A", expected, events, encoded, command_id, timedelta(days=1))


def test_one_group_answers_each_member_and_stores_exactly_the_good_ones(db_path):
    with SQLiteEventStore(db_path) as store:
        store.append("known", "A", 0, [_event()], command_id="cmd-known")
        heads: list[int] = []
        store.add_commit_listener(heads.append)
        good = [_member(f"good-{i}", 0, command_id=f"cmd-{i}") for i in range(20)]
        conflicting = _member("good-0", 0)  # good-0 is at version 1 inside the group
        duplicate = _member("good-1", 0, command_id="cmd-1")  # a command earlier in the group
        known = _member("known", 0, command_id="cmd-known")  # a command committed before
        claim = _member("owner-a", 0, events=[_event(constraints=(UniqueConstraint("u", "v"),))])
        clash = _member("owner-b", 0, events=[_event(constraints=(UniqueConstraint("u", "v"),))])
        follow = _member("good-2", 1, command_id="cmd-next")  # after good-2 in queue order
        batch = [*good[:10], conflicting, duplicate, claim, known, clash, *good[10:], follow]
        last = store.write_group(batch)

        for member in [*good, claim, follow]:
            assert member.error is None, member.error
            assert member.result is not None and not member.result.already_processed
        assert isinstance(conflicting.error, ConcurrencyError)
        assert (conflicting.error.expected, conflicting.error.actual) == (0, 1)
        assert isinstance(clash.error, UniqueConstraintError)
        assert duplicate.result is not None and duplicate.result.already_processed
        assert duplicate.result.events == good[1].result.events  # type: ignore[union-attr]
        assert known.result is not None and known.result.already_processed
        assert follow.result.events[0].version == 2  # type: ignore[union-attr]

        stored = store.read_all()
        assert len(stored) == 1 + len(good) + 2  # known, the good ones, claim, follow
        positions = [e.position for e in stored]
        assert positions == list(range(1, len(stored) + 1))
        assert last == positions[-1]
        assert store.constraint_owner("u", "v") == "owner-a"
        assert store.stream_version("owner-b") == 0


def test_concurrent_appends_share_one_commit_and_one_listener_call(db_path):
    with SQLiteEventStore(db_path) as store:
        heads: list[int] = []
        store.add_commit_listener(heads.append)
        results: dict[int, object] = {}

        def append(i: int) -> None:
            results[i] = store.append(f"a-{i}", "A", 0, [_event()], command_id=f"c-{i}")

        with store._db.write_lock:  # hold the writer: the leader waits, the rest queue
            threads = [threading.Thread(target=append, args=(i,)) for i in range(12)]
            threads[0].start()
            while not store._group._leading:  # type: ignore[union-attr]
                time.sleep(0.001)
            for t in threads[1:]:
                t.start()
            deadline = time.monotonic() + 10
            while len(store._group._queue) < 11:  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                time.sleep(0.001)
            assert not results, "nothing is answered before its commit"
        for t in threads:
            t.join(10)
        assert len(results) == 12
        assert heads == [1, 12]  # the leader's group, then one group of the other eleven
        assert store.count_events() == 12


def _form_a_group_of(store: SQLiteEventStore, size: int, prefix: str) -> None:
    """Make the last group one of ``size`` synchronous callers: they queue while the
    writer is held, behind a leader that then writes alone."""
    group = store._group
    assert group is not None

    def append(i: int) -> None:
        store.append(f"{prefix}-{i}", "A", 0, [_event()])

    threads = [threading.Thread(target=append, args=(i,)) for i in range(size + 1)]
    with store._db.write_lock:
        threads[0].start()
        while not group._leading:
            time.sleep(0.001)
        for t in threads[1:]:
            t.start()
        deadline = time.monotonic() + 10
        while len(group._queue) < size:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    for t in threads:
        t.join(10)
    assert group._cohort == size


def _gathering(store: SQLiteEventStore) -> None:
    deadline = time.monotonic() + 10
    while not store._group._gathering:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the leader did not wait for the others"
        time.sleep(0.001)


def test_a_leader_waits_for_the_last_groups_threads_and_commits_them_once(db_path, monkeypatch):
    # Without gathering, the first thread back after a group committed alone: groups
    # alternated between all the threads and one, an fsync each.
    with SQLiteEventStore(db_path) as store:
        _form_a_group_of(store, 4, "warm")
        heads: list[int] = []
        store.add_commit_listener(heads.append)
        monkeypatch.setattr(group_commit, "GATHER_WAIT", 30.0)  # only arrivals end the wait
        started = time.monotonic()

        def append(i: int) -> None:
            store.append(f"b-{i}", "A", 0, [_event()])

        threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
        threads[0].start()
        _gathering(store)
        assert heads == [], "the first one back did not commit alone"
        for t in threads[1:]:
            t.start()
        for t in threads:
            t.join(20)
        assert time.monotonic() - started < 20, "the fourth arrival did not end the wait"
        assert heads == [5 + 4]  # one commit for the four
        assert store.count_events() == 9


def test_a_leader_waits_at_most_gather_wait_and_then_follows_the_smaller_group(
    db_path, monkeypatch
):
    with SQLiteEventStore(db_path) as store:
        _form_a_group_of(store, 4, "warm")
        monkeypatch.setattr(group_commit, "GATHER_WAIT", 0.3)
        started = time.monotonic()
        store.append("alone", "A", 0, [_event()])
        assert time.monotonic() - started >= 0.25  # nobody came: it waited, then wrote
        assert store._group._cohort == 1  # type: ignore[union-attr]
        monkeypatch.setattr(group_commit, "GATHER_WAIT", 30.0)
        started = time.monotonic()
        store.append("alone", "A", 1, [_event()])
        assert time.monotonic() - started < 10, "a lone caller waited for itself"


def test_a_lone_caller_writes_without_the_queue_and_hands_the_lead_on(db_path, monkeypatch):
    # A lone caller's append is written as without group commit (no Member, no group):
    # it cost 5-7 us more per command through the queue's machinery.
    with SQLiteEventStore(db_path) as store:
        group = store._group
        assert group is not None
        groups: list[tuple[int, int]] = []  # (size, writing thread)
        write_group = store.write_group

        def counted(batch: list[Member]) -> int:
            groups.append((len(batch), threading.get_ident()))
            return write_group(batch)

        monkeypatch.setattr(store, "write_group", counted)
        store.append("a", "A", 0, [_event()], command_id="cmd-a")
        assert store.append("a", "A", 0, [_event()], command_id="cmd-a").already_processed
        with pytest.raises(ConcurrencyError):
            store.append("a", "A", 0, [_event()])
        unit = store.append_many(
            [StreamAppend("b", "A", 0, (_event(),)), StreamAppend("c", "A", 0, (_event(),))]
        )
        assert groups == [], "a lone caller went through a group"
        assert (group._leading, group._leader_thread, group._queue) == (False, 0, [])
        assert [r.events[0].position for _, r in unit.results] == [2, 3]
        # Whoever queues while a lone caller writes gets the lead after it, on its own thread.
        outcomes: dict[str, object] = {}

        def append(name: str) -> None:
            try:
                outcomes[name] = store.append(name, "A", 0, [_event()]).events[0].position
            except BaseException as exc:
                outcomes[name] = exc

        lone = threading.Thread(target=append, args=("d",))
        queued = threading.Thread(target=append, args=("e",))
        deadline = time.monotonic() + 10
        with store._db.write_lock:  # held here: the lone caller waits for it, leading
            lone.start()
            while not group._leading:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            queued.start()
            while not group._queue:
                assert time.monotonic() < deadline
                time.sleep(0.001)
        lone.join(10)
        queued.join(10)
        assert not lone.is_alive() and not queued.is_alive()
        assert outcomes == {"d": 4, "e": 5}
        assert groups == [(1, queued.ident)], "the queued caller did not lead its own group"
        assert (group._leading, group._leader_thread, group._queue) == (False, 0, [])


def test_close_ends_a_leaders_wait_and_answers_it_with_store_closed(db_path, monkeypatch):
    store = SQLiteEventStore(db_path)
    _form_a_group_of(store, 4, "warm")
    monkeypatch.setattr(group_commit, "GATHER_WAIT", 30.0)
    errors: list[BaseException] = []

    def append() -> None:
        try:
            store.append("late", "A", 0, [_event()])
        except BaseException as exc:
            errors.append(exc)

    leader = threading.Thread(target=append)
    leader.start()
    _gathering(store)
    started = time.monotonic()
    store.close()
    leader.join(20)
    assert time.monotonic() - started < 20
    assert len(errors) == 1 and isinstance(errors[0], StoreClosedError)
    with SQLiteEventStore(db_path) as reopened:
        assert reopened.stream_version("late") == 0


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt: a BaseException that lands while a leader waits."""


class _InterruptedWait:
    def __init__(self, condition: threading.Condition) -> None:
        self._condition = condition

    def wait(self, timeout: float) -> bool:
        raise _Interrupt  # as Condition.wait does, it raises with the lock held again

    def notify(self) -> None:
        self._condition.notify()

    def notify_all(self) -> None:
        self._condition.notify_all()


def test_a_leader_interrupted_while_it_gathers_passes_the_lead_on(db_path):
    with SQLiteEventStore(db_path) as store:
        _form_a_group_of(store, 4, "warm")
        group = store._group
        assert group is not None
        gathered = group._gathered
        group._gathered = _InterruptedWait(gathered)  # type: ignore[assignment]
        with pytest.raises(_Interrupt):
            store.append("interrupted", "A", 0, [_event()])
        group._gathered = gathered
        assert (group._leading, group._gathering, group._queue) == (False, False, [])
        done = threading.Event()
        other = threading.Thread(
            target=lambda: (store.append("next", "A", 0, [_event()]), done.set())
        )
        other.start()
        other.join(10)
        assert done.is_set(), "an append after the interrupted leader hung"
        assert store.stream_version("interrupted") == 0


class _InterruptedOnceWoken(group_commit._Wake):
    """A follower's wake whose wait raises once it is woken: a caller interrupted just
    as it was handed the lead."""

    __slots__ = ()

    def wait(self) -> None:
        super().wait()
        raise _Interrupt


def test_a_follower_interrupted_as_it_is_handed_the_lead_passes_it_on(db_path, monkeypatch):
    with SQLiteEventStore(db_path) as store:
        group = store._group
        assert group is not None
        outcomes: dict[str, object] = {}

        def append(name: str) -> None:
            try:
                outcomes[name] = store.append(name, "A", 0, [_event()])
            except BaseException as exc:
                outcomes[name] = exc

        leader = threading.Thread(target=append, args=("leader",))
        follower = threading.Thread(target=append, args=("follower",))
        with store._db.write_lock:  # the leader writes alone, held here; the follower queues
            leader.start()
            while not group._leading:
                time.sleep(0.001)
            monkeypatch.setattr(group_commit, "_Wake", _InterruptedOnceWoken)
            follower.start()
            deadline = time.monotonic() + 10
            while len(group._queue) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            monkeypatch.undo()
        leader.join(10)
        follower.join(10)
        assert isinstance(outcomes["follower"], _Interrupt)
        assert (group._leading, group._queue) == (False, [])
        late = threading.Thread(target=append, args=("late",))
        late.start()
        late.join(10)
        assert not late.is_alive(), "an append after the interrupted follower hung"
        assert store.stream_version("leader") == 1 and store.stream_version("late") == 1
        assert store.stream_version("follower") == 0  # its caller gave up before it was written


def _add_commit_failure(store: SQLiteEventStore) -> None:
    """A deferred foreign key on a side table: an append to 'poison' passes every statement
    and then makes COMMIT itself fail."""
    conn = store._db.writer
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.execute(
        "CREATE TRIGGER poison AFTER INSERT ON events WHEN NEW.aggregate_id = 'poison' "
        "BEGIN INSERT INTO child VALUES (999); END"
    )
    conn.execute("PRAGMA foreign_keys = ON")


def test_a_group_whose_commit_fails_acknowledges_none(db_path):
    with SQLiteEventStore(db_path) as store:
        _add_commit_failure(store)
        heads: list[int] = []
        store.add_commit_listener(heads.append)
        batch = [_member(f"ok-{i}", 0, command_id=f"c-{i}") for i in range(5)]
        batch.insert(2, _member("poison", 0))
        assert store.write_group(batch) == 0
        for member in batch:
            assert member.result is None
            assert isinstance(member.error, sqlite3.IntegrityError)
        assert store.count_events() == 0
        assert store.processed_command("c-0") is None
        assert not store._db.writer.in_transaction
        # The store goes on working.
        assert store.append("ok-0", "A", 0, [_event()]).events[0].position >= 1


def test_disk_full_answers_every_member_truly(db_path):
    with SQLiteEventStore(db_path) as store:
        store.append("seed", "A", 0, [_event()])
        conn = store._db.writer
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 3}")
        batch = [_member(f"big-{i}", 0, events=[_event(b"x" * 3000)]) for i in range(12)]
        store.write_group(batch)
        stored = {e.aggregate_id for e in store.read_all()}
        failed = [m for m in batch if m.error is not None]
        assert failed, "the file was limited to three more pages"
        for member in failed:
            assert isinstance(member.error, StorageFullError), member.error
        for member in batch:
            # Acknowledged exactly when stored: nothing lost silently, nothing claimed.
            assert (member.error is None) == (member.aggregate_id in stored)
            assert (member.result is not None) == (member.error is None)
        assert not conn.in_transaction


def test_close_answers_queued_appends_with_store_closed(db_path):
    store = SQLiteEventStore(db_path)
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            store.append(f"a-{i}", "A", 0, [_event()])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(6)]
    store._db.write_lock.acquire()
    try:
        threads[0].start()
        while not store._group._leading:  # type: ignore[union-attr]
            time.sleep(0.001)
        for t in threads[1:]:
            t.start()
        while len(store._group._queue) < 5:  # type: ignore[union-attr]
            time.sleep(0.001)
        closer = threading.Thread(target=store.close)
        closer.start()
        deadline = time.monotonic() + 10
        while len(errors) < 5:
            assert time.monotonic() < deadline, "queued appends were not answered on close"
            time.sleep(0.001)
    finally:
        store._db.write_lock.release()
    for t in [*threads, closer]:
        t.join(10)
    assert len(errors) == 6
    assert all(isinstance(e, StoreClosedError) for e in errors)
    with pytest.raises(StoreClosedError):
        store.append("late", "A", 0, [_event()])
    with SQLiteEventStore(db_path) as reopened:
        assert reopened.count_events() == 0


def test_append_async_answers_like_append_and_refuses_when_closed(db_path):
    async def main(store: SQLiteEventStore) -> None:
        results = await asyncio.gather(
            *(store.append_async(f"a-{i % 4}", "A", 0, [_event()]) for i in range(8)),
            return_exceptions=True,
        )
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert len(ok) == 4
        assert all(isinstance(r, ConcurrencyError) for r in results if r not in ok)
        again = await store.append_async("a-0", "A", 1, [_event()], command_id="c")
        assert (await store.append_async("a-0", "A", 1, [_event()], command_id="c")).events == (
            again.events
        )
        store.close()
        with pytest.raises(StoreClosedError):
            await store.append_async("a-0", "A", 2, [_event()])

    asyncio.run(main(SQLiteEventStore(db_path)))


def test_group_commit_off_appends_one_by_one(db_path):
    async def main(store: SQLiteEventStore) -> None:
        result = await store.append_async("a", "A", 0, [_event()])
        assert result.events[0].version == 1

    with SQLiteEventStore(db_path, group_commit=False) as store:
        assert not store.group_commit
        asyncio.run(main(store))
        assert store.append("a", "A", 1, [_event()]).events[0].version == 2


def test_the_generic_append_async_serves_a_class_that_inherits_nothing(db_path):
    class Wrapper:
        append_async = append_async_default

        def __init__(self, store: SQLiteEventStore) -> None:
            self.append = store.append

    class Mixed(AsyncAppendMixin):
        def __init__(self, store: SQLiteEventStore) -> None:
            self.append = store.append

    with SQLiteEventStore(db_path) as store:
        first = asyncio.run(Wrapper(store).append_async("a", "A", 0, [_event()]))
        second = asyncio.run(Mixed(store).append_async("a", "A", 1, [_event()]))
        assert [first.events[0].version, second.events[0].version] == [1, 2]


def test_threads_and_tasks_retrying_on_shared_aggregates_lose_nothing(db_path):
    """16 threads and 64 asyncio tasks on 6 accounts, while a reader tails the log."""
    accounts = [f"acc-{i}" for i in range(6)]
    per_worker = 3
    with SQLiteEventStore(db_path, synchronous="NORMAL") as store:
        repo = account_repository(store, cache=4)

        def deposit(account) -> None:  # type: ignore[no-untyped-def]
            if account.version == 0:
                account.open("o", 0)
            account.deposit(1)

        tail: list[int] = []
        stop = threading.Event()

        def tailer() -> None:
            seen = 0
            while not stop.is_set() or seen < store.head_position():
                for event in store.read_all(seen):
                    tail.append(event.position)
                    seen = event.position

        def thread_worker(w: int) -> None:
            for i in range(per_worker):
                repo.retry_on_conflict(
                    accounts[(w + i) % 6],
                    deposit,
                    command_id=f"t{w}-{i}",
                    attempts=200,
                    backoff=0.001,
                )

        async def task_worker(w: int) -> None:
            for i in range(per_worker):
                await repo.retry_on_conflict_async(
                    accounts[(w + i) % 6],
                    deposit,
                    command_id=f"a{w}-{i}",
                    attempts=200,
                    backoff=0.001,
                )

        async def tasks() -> None:
            await asyncio.gather(*(task_worker(w) for w in range(64)))

        reader = threading.Thread(target=tailer)
        reader.start()
        threads = [threading.Thread(target=thread_worker, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        asyncio.run(tasks())
        for t in threads:
            t.join(60)
        stop.set()
        reader.join(60)

        commands = (16 + 64) * per_worker
        balances = sum(repo.load(a).state.balance for a in accounts)
        assert balances == commands
        assert tail == list(range(1, len(tail) + 1)), "the tail saw a gap or a repeat"
        assert len(tail) == store.count_events()
        for account_id in accounts:
            versions = [e.version for e in store.load_stream(account_id)]
            assert versions == list(range(1, len(versions) + 1))
        causes = [e.metadata.causation_id for e in store.read_all()]
        deposits = {c for c in causes}
        assert len(deposits) == commands


def test_a_retry_whose_record_expired_is_recognised_inside_the_group(db_path, monkeypatch):
    import eventstore.sqlite.store as sqlite_store
    from eventstore import deterministic_event_id

    # The append may sweep expired records by chance (1 in 1,000): not here.
    monkeypatch.setattr(sqlite_store, "_EXPIRY_SWEEP_CHANCE", 0)

    def events(command_id: str) -> list[NewEvent]:
        return [NewEvent(deterministic_event_id(command_id, "acc", 0), "t.E", b"")]

    with SQLiteEventStore(db_path) as store:
        first = store.append(
            "acc", "A", 0, events("old"), command_id="old", command_ttl=timedelta(microseconds=1)
        )
        time.sleep(0.002)
        assert store.delete_expired_commands() == 1
        new = Member("acc", "A", 1, events("new"), [(None, None)], "new", timedelta(days=1))
        retry = Member("acc", "A", 0, events("old"), [(None, None)], "old", timedelta(days=1))
        store.write_group([new, retry])
        assert new.error is None and retry.error is None
        assert retry.result is not None and retry.result.already_processed
        assert retry.result.events == first.events
        assert store.stream_version("acc") == 2


def test_when_sqlite_rolls_the_whole_group_back_the_others_are_retried_alone(db_path):
    """An interrupt inside an INSERT in an explicit transaction rolls all of it back."""
    with SQLiteEventStore(db_path) as store:
        conn = store._db.writer

        def interrupt() -> int:
            conn.interrupt()
            return 0

        conn.create_function("interrupt_me", 0, interrupt)
        conn.execute(
            "CREATE TRIGGER lost AFTER INSERT ON events WHEN NEW.aggregate_id = 'lost' "
            "BEGIN SELECT interrupt_me(); SELECT count(*) FROM (WITH RECURSIVE c(x) AS "
            "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT x FROM c); END"
        )
        heads: list[int] = []
        store.add_commit_listener(heads.append)
        before = [_member(f"b-{i}", 0, command_id=f"b-{i}") for i in range(3)]
        after = [_member(f"a-{i}", 0) for i in range(2)]
        lost = _member("lost", 0)
        groups: list[int] = []
        write_group = store.write_group

        def counting(batch):  # type: ignore[no-untyped-def]
            groups.append(len(batch))
            return write_group(batch)

        store.write_group = counting  # type: ignore[method-assign]
        store.write_group([*before, lost, *after])
        assert groups == [6, 1, 1, 1, 1, 1], "each other member was retried alone"
        assert isinstance(lost.error, sqlite3.OperationalError)
        assert "interrupt" in str(lost.error)
        for member in [*before, *after]:
            assert member.error is None and member.result is not None
        stored = {e.aggregate_id for e in store.read_all()}
        assert stored == {m.aggregate_id for m in [*before, *after]}
        assert store.processed_command("b-0") is not None
        assert not conn.in_transaction


def test_a_sync_leader_hands_async_waiters_to_the_writer_thread(db_path):
    with SQLiteEventStore(db_path) as store:
        group = store._group
        assert group is not None
        # Held on another thread than the loop's: on the loop's thread an async append
        # would be written there, as append is on a thread holding the write lock.
        held, free = threading.Event(), threading.Event()

        def hold() -> None:
            with store._db.write_lock:
                held.set()
                free.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        leader = threading.Thread(target=store.append, args=("s", "A", 0, [_event()]))
        leader.start()
        while not group._leading:
            time.sleep(0.001)

        async def main() -> list[int]:
            tasks = [
                asyncio.ensure_future(store.append_async(f"x-{i}", "A", 0, [_event()]))
                for i in range(5)
            ]
            while len(group._queue) < 5:
                await asyncio.sleep(0.001)
            free.set()
            done = await asyncio.gather(*tasks)
            return [r.events[0].position for r in done]

        positions = asyncio.run(main())
        leader.join(10)
        holder.join(10)
        assert sorted(positions) == [2, 3, 4, 5, 6]
        deadline = time.monotonic() + 10
        while group._leading:  # the writer thread drops the lead once the queue is empty
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert not group._queue


def test_an_append_inside_the_writers_transaction_never_waits_for_a_group(db_path):
    """Queued behind a leader that waits for the lock this thread holds, it would hang:
    it runs on this thread instead (and, as before group commit, SQLite refuses a
    transaction within a transaction: handlers append through ctx.store)."""
    with SQLiteEventStore(db_path) as store:
        other = threading.Thread(target=store.append, args=("o", "A", 0, [_event()]))
        with store._db.transaction():
            other.start()
            while not store._group._leading:  # type: ignore[union-attr]
                time.sleep(0.001)
            with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
                store.append("x", "A", 0, [_event()])
        other.join(10)
        assert store.stream_version("o") == 1


def test_a_commit_listener_that_appends_does_not_wait_for_itself(db_path):
    with SQLiteEventStore(db_path) as store:
        seen: list[int] = []

        def listener(head: int) -> None:
            seen.append(head)
            if head == 1:  # on the writing thread, right after the group committed
                store.append("echo", "A", 0, [_event()])

        store.add_commit_listener(listener)
        store.append("a", "A", 0, [_event()])
        assert store.stream_version("echo") == 1
        assert seen == [1, 2]
