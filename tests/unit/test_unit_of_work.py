"""UnitOfWork's own rules: what it refuses, and units without repositories."""

from __future__ import annotations

import pytest

from eventstore import UnitOfWork
from eventstore.sqlite import SQLiteEventStore
from tests.support.bank import Account, account_repository


@pytest.fixture
def store():
    with SQLiteEventStore(":memory:") as opened:
        yield opened


def _opened(account_id: str, initial: int = 0) -> Account:
    account = Account(account_id)
    account.open(account_id, initial)
    return account


def test_two_objects_for_one_aggregate_are_refused(store):
    with pytest.raises(ValueError, match="two objects for aggregate 'a'"), UnitOfWork(store) as uow:
        uow.save(_opened("a"))
        uow.save(_opened("a"))
    assert store.count_events() == 0


def test_saving_the_same_object_twice_stores_its_events_once(store):
    a = _opened("a")
    with UnitOfWork(store) as uow:
        uow.save(a)
        uow.save(a)
    assert len(uow) == 1 and list(uow) == [a]
    assert store.stream_version("a") == 1 and a.version == 1 and not a.uncommitted_events


def test_a_committed_unit_takes_no_more(store):
    with UnitOfWork(store) as uow:
        uow.save(_opened("a"))
    with pytest.raises(RuntimeError, match="has committed"):
        uow.save(_opened("b"))


def test_an_empty_unit_writes_nothing(store):
    with UnitOfWork(store, command_id="nothing") as uow:
        pass
    assert uow.result is not None and uow.result.results == ()
    assert store.count_events() == 0


def test_a_retry_without_repositories_says_how_to_reload(store):
    with UnitOfWork(store, command_id="c1") as uow:
        uow.save(_opened("a"))
    with (
        pytest.raises(RuntimeError, match=r"pass one to uow\.save"),
        UnitOfWork(store, command_id="c1") as again,
    ):
        again.save(_opened("a"))
    assert store.count_events() == 1


def test_a_unit_result_names_its_aggregates(store):
    repo = account_repository(store)
    with UnitOfWork(store) as uow:
        repo.save(_opened("a", 5), unit=uow)
        repo.save(_opened("b"), unit=uow)
    assert uow.result.aggregate_ids == ["a", "b"]
    with pytest.raises(KeyError, match="'c' is not in this unit"):
        uow.result["c"]


def test_bad_arguments_are_named(store):
    with pytest.raises(ValueError, match="non-empty command id"):
        UnitOfWork(store, command_id="")
    with pytest.raises(TypeError, match="metadata"):
        UnitOfWork(store, metadata={"x": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence of StreamAppend"):
        store.append_many("abc")


def test_the_event_store_port_declares_units(store):
    from eventstore import EventStore

    class AppendsOnly:  # a store of before units: no longer an EventStore
        def __getattr__(self, name: str) -> object:
            if name.startswith("append_many"):
                raise AttributeError(name)
            return getattr(store, name)

    assert isinstance(store, EventStore)
    assert callable(EventStore.append_many) and callable(EventStore.append_many_async)
    assert not isinstance(AppendsOnly(), EventStore)


def test_a_double_with_only_a_synchronous_append_many_gets_the_async_default(store):
    """A test double (or an adapter) written with ``append_many`` alone still serves
    ``async with UnitOfWork(...)``, and ``AsyncAppendMixin`` gives it the method."""
    import asyncio

    from eventstore import AsyncAppendMixin, EventStore, append_many_async_default

    class Wrapper:
        def __init__(self, inner: SQLiteEventStore) -> None:
            self.append_many = inner.append_many

    class Mixed(AsyncAppendMixin):
        def __init__(self, inner: SQLiteEventStore) -> None:
            self.append = inner.append
            self.append_many = inner.append_many

    async def save(target: object, *ids: str) -> list[int]:
        async with UnitOfWork(target) as uow:
            for account_id in ids:
                uow.save(_opened(account_id, 1))
        assert uow.result is not None
        return [uow.result[a].events[0].version for a in ids]

    assert asyncio.run(save(Wrapper(store), "a", "b")) == [1, 1]
    assert asyncio.run(save(Mixed(store), "c")) == [1]
    assert Mixed.append_many_async is append_many_async_default
    assert not isinstance(Wrapper(store), EventStore)  # a double is no full store
    assert store.count_events() == 3
