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
