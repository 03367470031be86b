"""The repository's aggregate cache: copies, catching up, eviction, the bound; and the
async save path giving the sync results."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import ConcurrencyError
from tests.support.bank import account_repository


def _opened(repo, account_id: str = "acc-1"):  # type: ignore[no-untyped-def]
    from tests.support.bank import Account

    account = Account(account_id)
    account.open("ann", 10)
    repo.save(account)
    return account


def test_a_cached_load_is_a_private_copy(db_path):
    from eventstore.sqlite import SQLiteEventStore

    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store, cache=8)
        _opened(repo)
        first = repo.load("acc-1")
        first.deposit(5)  # not saved: must not leak into the cache
        second = repo.load("acc-1")
        assert second is not first
        assert second.state.balance == 10
        assert second.version == 1 and not second.uncommitted_events
        assert repo.cached_ids == ["acc-1"]


def test_a_cached_aggregate_catches_up_with_events_saved_elsewhere(db_path):
    from eventstore.sqlite import SQLiteEventStore

    with SQLiteEventStore(db_path) as store:
        cached = account_repository(store, cache=8)
        other = account_repository(store)  # another process or repository
        _opened(cached)
        cached.load("acc-1")
        account = other.load("acc-1")
        account.deposit(7)
        other.save(account)
        fresh = cached.load("acc-1")
        assert (fresh.version, fresh.state.balance) == (2, 17)
        assert list(fresh.state.history) == ["AccountOpened", "MoneyDeposited"]


def test_a_conflict_evicts_and_the_retry_succeeds(db_path):
    from eventstore.sqlite import SQLiteEventStore

    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store, cache=8)
        _opened(repo)
        a, b = repo.load("acc-1"), repo.load("acc-1")
        a.deposit(1)
        repo.save(a)
        b.deposit(2)
        with pytest.raises(ConcurrencyError):
            repo.save(b)
        assert "acc-1" not in repo.cached_ids
        assert repo.load("acc-1").state.balance == 11


def test_the_cache_keeps_the_most_recently_used(db_path):
    from eventstore.sqlite import SQLiteEventStore

    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store, cache=2)
        for i in range(3):
            _opened(repo, f"acc-{i}")
        assert repo.cached_ids == ["acc-1", "acc-2"]
        repo.load("acc-1")
        repo.load("acc-0")
        assert repo.cached_ids == ["acc-1", "acc-0"]
        assert repo.load("acc-0", at_version=1).version == 1


def test_cache_must_be_a_count():
    from eventstore.sqlite import SQLiteEventStore

    with SQLiteEventStore() as store, pytest.raises(ValueError, match="cache must be"):
        account_repository(store, cache=-1)


def test_async_saves_give_the_sync_results(db_path):
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import Account

    async def main(store: SQLiteEventStore) -> None:
        repo = account_repository(store, cache=4)
        account = Account("acc-1")
        account.open("ann", 1)
        assert (await repo.save_async(account)).version == 1
        loaded = await repo.load_async("acc-1")
        loaded.deposit(2)
        first = await repo.save_with_command_async(loaded, "cmd-1")
        again = await repo.load_async("acc-1")
        again.deposit(2)
        second = await repo.save_with_command_async(again, "cmd-1")
        assert second.already_processed and second.events == first.events
        assert not again.uncommitted_events and again.version == 2
        stale = Account("acc-1")
        stale.open("bob")
        with pytest.raises(ConcurrencyError):
            await repo.save_async(stale)

        async def add(account) -> None:  # type: ignore[no-untyped-def]
            await asyncio.sleep(0)
            account.deposit(4)

        result = await repo.retry_on_conflict_async("acc-1", add, command_id="cmd-2")
        assert result.version == 3
        repeat = await repo.retry_on_conflict_async("acc-1", add, command_id="cmd-2")
        assert repeat.already_processed
        assert (await repo.load_async("acc-1")).state.balance == 7
        with pytest.raises(ValueError, match="attempts"):
            await repo.retry_on_conflict_async("acc-1", add, attempts=0)

    with SQLiteEventStore(db_path) as store:
        asyncio.run(main(store))


def test_aggregates_without_snapshots_are_copied_whole(db_path):
    from eventstore import AggregateRoot, Repository
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import EVENT_TYPES, pb

    class Counter(AggregateRoot):
        aggregate_type = "Counter"

        def __init__(self, aggregate_id: str) -> None:
            super().__init__(aggregate_id)
            self.seen: list[int] = []

        def apply_event(self, event) -> None:  # type: ignore[no-untyped-def]
            self.seen.append(event.amount)

    with SQLiteEventStore(db_path) as store:
        repo = Repository(store, Counter, event_types=EVENT_TYPES, cache=2)
        counter = Counter("c-1")
        counter.apply_change(pb.MoneyDeposited(amount=3))
        repo.save(counter)
        first = repo.load("c-1")
        first.seen.append(99)
        assert repo.load("c-1").seen == [3]


# -- remembering is best effort (decision 7: a snapshot_state bug never fails a command) ------
class _TooLargeToCopy(Exception):
    pass


def _unsnapshottable_from_balance(limit: int):  # type: ignore[no-untyped-def]
    """An Account whose snapshot_state raises once its balance reaches ``limit``."""
    from tests.support.bank import Account

    class BigAccount(Account):
        def snapshot_state(self) -> bytes:
            if self.state.balance >= limit:
                raise _TooLargeToCopy("state too large to snapshot")
            return super().snapshot_state()

    return BigAccount


def test_a_failing_snapshot_state_fails_neither_saves_nor_loads_with_the_cache(db_path, caplog):
    import logging

    from eventstore import EveryNEvents
    from eventstore.sqlite import SQLiteEventStore

    big = _unsnapshottable_from_balance(12)
    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store, snapshot_strategy=EveryNEvents(1), cache=8)
        repo.factory = big
        _opened(repo)  # balance 10: cached and snapshotted
        with caplog.at_level(logging.ERROR, logger="eventstore.repository"):
            for _ in range(3):
                result = repo.retry_on_conflict("acc-1", lambda a: a.deposit(1))
                assert not result.already_processed
        assert store.stream_version("acc-1") == 4  # each deposit stored once
        loaded = repo.load("acc-1")
        assert (loaded.version, loaded.state.balance) == (4, 13)
        assert [s.version for s in store.list_snapshots("acc-1")] == [1, 2]
    assert any("acc-1" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_failing_snapshot_state_fails_no_async_save_with_the_cache(db_path):
    from eventstore import EveryNEvents
    from eventstore.sqlite import SQLiteEventStore

    big = _unsnapshottable_from_balance(12)

    async def main(store: SQLiteEventStore) -> None:
        repo = account_repository(store, snapshot_strategy=EveryNEvents(1), cache=8)
        repo.factory = big
        account = big("acc-1")
        account.open("ann", 10)
        await repo.save_async(account)
        for _ in range(3):
            await repo.retry_on_conflict_async("acc-1", lambda a: a.deposit(1))
        assert (await repo.load_async("acc-1")).state.balance == 13

    with SQLiteEventStore(db_path) as store:
        asyncio.run(main(store))
        assert store.stream_version("acc-1") == 4


def test_an_aggregate_deepcopy_cannot_copy_is_saved_and_loaded_with_the_cache(db_path):
    import threading

    from eventstore import AggregateRoot, Repository
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import EVENT_TYPES, pb

    class Guarded(AggregateRoot):
        aggregate_type = "Guarded"

        def __init__(self, aggregate_id: str) -> None:
            super().__init__(aggregate_id)
            self.lock = threading.Lock()  # copy.deepcopy cannot copy a lock
            self.total = 0

        def apply_event(self, event) -> None:  # type: ignore[no-untyped-def]
            self.total += event.amount

    with SQLiteEventStore(db_path) as store:
        repo = Repository(store, Guarded, event_types=EVENT_TYPES, cache=2)
        guarded = Guarded("g-1")
        guarded.apply_change(pb.MoneyDeposited(amount=3))
        repo.save(guarded)
        guarded.apply_change(pb.MoneyDeposited(amount=4))
        repo.save(guarded)
        assert (repo.load("g-1").version, repo.load("g-1").total) == (2, 7)
        assert store.stream_version("g-1") == 2


def test_a_cached_state_that_cannot_be_restored_is_loaded_from_the_store(db_path):
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import Account

    class Unrestorable(Account):
        def restore_snapshot(self, data: bytes) -> None:
            raise ValueError("restore_snapshot bug")

    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store, cache=4)
        repo.factory = Unrestorable
        account = Unrestorable("acc-1")
        account.open("ann", 10)
        repo.save(account)  # cached as snapshot_state bytes
        loaded = repo.load("acc-1")
        assert (loaded.version, loaded.state.balance) == (1, 10)


# -- the snapshot strategy sees the same versions with the cache as without ----------------
def _snapshot_versions(store, cache: int, saves: int) -> list[int]:  # type: ignore[no-untyped-def]
    from eventstore import EveryNEvents

    repo = account_repository(store, snapshot_strategy=EveryNEvents(5), cache=cache)
    _opened(repo, f"acc-{cache}")
    for amount in range(1, saves):
        account = repo.load(f"acc-{cache}")
        account.deposit(amount)
        repo.save(account)
    return [s.version for s in store.list_snapshots(f"acc-{cache}")]


def test_every_n_events_snapshots_as_often_with_the_cache_as_without(db_path):
    from eventstore.sqlite import SQLiteEventStore

    with SQLiteEventStore(db_path) as store:
        assert _snapshot_versions(store, 0, 20) == [5, 10, 15, 20]
        assert _snapshot_versions(store, 16, 20) == [5, 10, 15, 20]


def test_every_n_events_snapshots_as_often_with_the_cache_in_async_saves(db_path):
    from eventstore import EveryNEvents
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import Account

    async def main(store: SQLiteEventStore) -> None:
        repo = account_repository(store, snapshot_strategy=EveryNEvents(5), cache=16)
        account = Account("acc-1")
        account.open("ann")
        await repo.save_async(account)
        for amount in range(1, 15):
            loaded = await repo.load_async("acc-1")
            loaded.deposit(amount)
            await repo.save_async(loaded)

    with SQLiteEventStore(db_path) as store:
        asyncio.run(main(store))
        assert [s.version for s in store.list_snapshots("acc-1")] == [5, 10, 15]


def test_a_cached_load_after_a_snapshot_counts_from_that_snapshot(db_path):
    from eventstore.sqlite import SQLiteEventStore

    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store, cache=4)
        account = _opened(repo)
        account.deposit(1)
        repo.save(account)
        repo.save_snapshot(account)
        assert repo.load("acc-1").snapshot_version == 2
