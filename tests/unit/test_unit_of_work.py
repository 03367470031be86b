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
