"""Repository wiring: event types, snapshot store defaults, command results."""

from __future__ import annotations

import pytest

from eventstore import CommandResult, Event, EventDecodeError, EventTypeRegistry, Repository
from tests.support.bank import EVENT_TYPES, Account, pb


def test_event_type_registry_is_keyed_by_proto_full_name():
    registry = EventTypeRegistry(EVENT_TYPES)
    assert "testbank.v1.MoneyDeposited" in registry
    assert registry["testbank.v1.MoneyDeposited"] is pb.MoneyDeposited
    assert len(registry) == len(EVENT_TYPES)


def test_event_type_registry_decodes_a_stored_event():
    registry = EventTypeRegistry(EVENT_TYPES)
    data = pb.MoneyDeposited(amount=7).SerializeToString()
    event = Event("e-1", "acc-1", "Account", "testbank.v1.MoneyDeposited", 1, 5, 0, data)
    assert registry.decode(event) == pb.MoneyDeposited(amount=7)


def test_event_type_registry_refuses_an_unknown_type_with_the_facts():
    event = Event("e-1", "acc-1", "Account", "testbank.v1.Nope", 1, 5, 0, b"")
    with pytest.raises(EventDecodeError) as info:
        EventTypeRegistry(EVENT_TYPES).decode(event)
    assert (info.value.event_id, info.value.position, info.value.event_type) == (
        "e-1",
        5,
        "testbank.v1.Nope",
    )


def test_repository_accepts_a_registry_or_message_classes(memory_store):
    registry = EventTypeRegistry(EVENT_TYPES)
    assert Repository(memory_store, Account, event_types=registry).event_types is registry
    from_list = Repository(memory_store, Account, event_types=EVENT_TYPES).event_types
    assert set(from_list) == set(registry)


def test_repository_uses_the_event_store_as_snapshot_store_when_it_is_one(memory_store):
    repo = Repository(memory_store, Account, event_types=EVENT_TYPES)
    assert repo.snapshot_store is memory_store


def test_save_without_command_and_without_changes_returns_an_empty_result(memory_store):
    repo = Repository(memory_store, Account, event_types=EVENT_TYPES)
    result = repo.save(Account("acc-1"))
    assert result == CommandResult("", ())
    assert result.version == 0
    assert memory_store.head_position() == 0


def test_command_result_version_is_that_of_its_last_event(memory_store):
    repo = Repository(memory_store, Account, event_types=EVENT_TYPES)
    account = Account("acc-1")
    account.open("ann")
    account.deposit(1)
    assert repo.save_with_command(account, "cmd-1").version == 2


def test_load_reads_through_a_store_subclass_that_changes_load_stream(tmp_path):
    from eventstore import SQLiteEventStore

    class CountingStore(SQLiteEventStore):
        reads = 0

        def load_stream(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            type(self).reads += 1
            return super().load_stream(*args, **kwargs)

    with CountingStore(tmp_path / "s.db") as store:
        repo = Repository(store, Account, event_types=EVENT_TYPES)
        account = Account("acc-1")
        account.open("ann", 10)
        repo.save(account)
        assert repo.load("acc-1").state.balance == 10
        assert CountingStore.reads == 1


def test_load_ignores_a_snapshot_at_version_0_stored_before_they_were_refused(tmp_path):
    import sqlite3

    from eventstore import AggregateNotFoundError, SQLiteEventStore

    path = tmp_path / "s.db"
    with SQLiteEventStore(path) as store:
        repo = Repository(store, Account, event_types=EVENT_TYPES)
        state = pb.AccountState(account_id="ghost", balance=5).SerializeToString()
        with sqlite3.connect(path) as raw:  # as an older release stored it
            raw.execute(
                "INSERT INTO snapshots (aggregate_id, aggregate_type, version, schema_key, "
                "data, created_at) VALUES ('ghost', 'Account', 0, ?, ?, 0)",
                (Account.schema_key, state),
            )
        raw.close()
        assert [s.version for s in store.list_snapshots("ghost")] == [0]
        with pytest.raises(AggregateNotFoundError):
            repo.load("ghost")
        account = Account("ghost")
        account.open("ann", 10)
        repo.save(account)
        loaded = repo.load("ghost")
        assert (loaded.version, loaded.snapshot_version, loaded.state.balance) == (1, 0, 10)
