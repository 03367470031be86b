"""Snapshots: kept per (aggregate, version), queried, pruned, and used by the repository."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from eventstore import AggregateNotFoundError, EveryNEvents, Snapshot
from eventstore.core.arguments import MAX_INTEGER
from tests.support.bank import Account, account_repository, pb


def snap(
    aggregate_id: str, version: int, *, type_: str = "Account", data: bytes = b"x"
) -> Snapshot:
    return Snapshot(aggregate_id, type_, version, Account.schema_key, data)


# -- the snapshot store port ----------------------------------------------------------------
def test_no_snapshot_is_none(store):
    assert store.latest_snapshot("acc-1") is None
    assert store.list_snapshots("acc-1") == []


def test_several_versions_of_one_aggregate_are_kept(store):
    for version in (3, 6, 9):
        store.save_snapshot(snap("acc-1", version))
    assert [s.version for s in store.list_snapshots("acc-1")] == [3, 6, 9]


def test_saved_snapshot_reads_back_unchanged(store):
    saved = snap("acc-1", 4, data=b"\x00state\xff")
    store.save_snapshot(saved)
    got = store.latest_snapshot("acc-1")
    assert (got.aggregate_id, got.aggregate_type, got.version, got.schema_key, got.data) == (
        "acc-1",
        "Account",
        4,
        Account.schema_key,
        b"\x00state\xff",
    )
    assert got.created_at is not None


def test_saving_the_same_version_twice_is_harmless(store):
    store.save_snapshot(snap("acc-1", 5, data=b"one"))
    store.save_snapshot(snap("acc-1", 5, data=b"one"))
    assert [s.version for s in store.list_snapshots("acc-1")] == [5]


def test_latest_snapshot_is_the_highest_version(store):
    for version in (6, 2, 9, 4):
        store.save_snapshot(snap("acc-1", version))
    assert store.latest_snapshot("acc-1").version == 9


def test_latest_snapshot_at_or_before_a_version(store):
    for version in (3, 6, 9):
        store.save_snapshot(snap("acc-1", version))
    assert store.latest_snapshot("acc-1", 6).version == 6
    assert store.latest_snapshot("acc-1", 8).version == 6
    assert store.latest_snapshot("acc-1", 2) is None


def test_snapshots_of_other_aggregates_are_separate(store):
    store.save_snapshot(snap("acc-1", 3))
    store.save_snapshot(snap("acc-2", 7))
    assert store.latest_snapshot("acc-1").version == 3


def test_delete_snapshots_older_than_a_version(store):
    for version in (3, 6, 9):
        store.save_snapshot(snap("acc-1", version))
    store.save_snapshot(snap("acc-2", 1))
    assert store.delete_snapshots_older_than("acc-1", 6) == 1
    assert [s.version for s in store.list_snapshots("acc-1")] == [6, 9]
    assert [s.version for s in store.list_snapshots("acc-2")] == [1]


def test_delete_snapshots_of_an_aggregate_type(store):
    store.save_snapshot(snap("acc-1", 1))
    store.save_snapshot(snap("acc-2", 1))
    store.save_snapshot(snap("user-1", 1, type_="User"))
    assert store.delete_snapshots_of_type("Account") == 2
    assert store.latest_snapshot("acc-1") is None
    assert store.latest_snapshot("user-1") is not None


def test_keep_last_n_snapshots(store):
    for version in range(1, 6):
        store.save_snapshot(snap("acc-1", version))
    store.save_snapshot(snap("acc-2", 1))
    assert store.keep_last_snapshots("acc-1", 2) == 3
    assert [s.version for s in store.list_snapshots("acc-1")] == [4, 5]
    assert len(store.list_snapshots("acc-2")) == 1


def test_keep_last_rejects_a_negative_count(store):
    with pytest.raises(ValueError, match="count"):
        store.keep_last_snapshots("acc-1", -1)


def test_a_snapshot_at_version_0_or_below_is_refused_naming_the_version(store):
    for version in (0, -1, -(2**70)):
        with pytest.raises(ValueError, match=f"version must be >= 1, got {version}"):
            store.save_snapshot(snap("acc-1", version))
    assert store.list_snapshots("acc-1") == []


@pytest.mark.parametrize("version", [True, 1.5, "3", None])
def test_a_snapshot_version_that_is_not_an_int_is_refused(store, version):
    with pytest.raises(TypeError, match="version must be an int"):
        store.save_snapshot(snap("acc-1", version))  # type: ignore[arg-type]
    assert store.list_snapshots("acc-1") == []


def _two_four_six_eight(store) -> None:  # type: ignore[no-untyped-def]
    for version in (2, 4, 6, 8):
        store.save_snapshot(snap("acc-1", version))


def _left(store) -> list[int]:  # type: ignore[no-untyped-def]
    return [s.version for s in store.list_snapshots("acc-1")]


def test_delete_snapshots_older_than_a_bound_beyond_the_integers_deletes_them_all(store):
    _two_four_six_eight(store)
    store.save_snapshot(snap("acc-1", MAX_INTEGER))
    assert store.delete_snapshots_older_than("acc-1", 2**64) == 5
    assert _left(store) == []


def test_delete_snapshots_older_than_a_bound_at_or_below_1_deletes_none(store):
    _two_four_six_eight(store)
    for bound in (1, 0, -5, -(2**64)):
        assert store.delete_snapshots_older_than("acc-1", bound) == 0
    assert _left(store) == [2, 4, 6, 8]


@pytest.mark.parametrize("version", ["5", None, True, 5.5])
def test_delete_snapshots_older_than_refuses_a_version_that_is_not_an_int(store, version):
    _two_four_six_eight(store)
    with pytest.raises(TypeError, match="delete_snapshots_older_than: version must be an int"):
        store.delete_snapshots_older_than("acc-1", version)
    assert _left(store) == [2, 4, 6, 8]


@pytest.mark.parametrize("count", [True, 1.5, "2", None])
def test_keep_last_snapshots_refuses_a_count_that_is_not_an_int(store, count):
    _two_four_six_eight(store)
    with pytest.raises(TypeError, match="keep_last_snapshots: count must be an int"):
        store.keep_last_snapshots("acc-1", count)
    assert _left(store) == [2, 4, 6, 8]


@pytest.mark.parametrize("bound", [5.5, "5", True])
def test_latest_snapshot_refuses_a_bound_that_is_not_an_int(store, bound):
    _two_four_six_eight(store)
    with pytest.raises(TypeError, match="at_or_before_version must be an int"):
        store.latest_snapshot("acc-1", bound)


def test_latest_snapshot_at_or_before_a_bound_below_the_integers_is_none(store):
    _two_four_six_eight(store)
    assert store.latest_snapshot("acc-1", -(2**70)) is None


def test_snapshot_stats(store):
    store.save_snapshot(snap("acc-1", 1, data=b"aa"))
    store.save_snapshot(snap("acc-1", 2, data=b"aaaa"))
    store.save_snapshot(snap("acc-2", 1, data=b"aaaaaa"))
    stats = store.snapshot_stats()
    assert (stats.count, stats.aggregates, stats.total_bytes) == (3, 2, 12)
    assert stats.average_bytes == 4.0


def test_snapshot_stats_of_empty_store(store):
    stats = store.snapshot_stats()
    assert (stats.count, stats.aggregates, stats.total_bytes, stats.average_bytes) == (0, 0, 0, 0.0)


# -- the repository and snapshots -----------------------------------------------------------
def _account_with_deposits(repo, count: int, account_id: str = "acc-1") -> Account:
    """An account opened with 100, then ``count`` deposits of 1, 2, 3, ... each saved on its own."""
    account = Account(account_id)
    account.open("ann", 100)
    repo.save(account)
    for amount in range(1, count + 1):
        account.deposit(amount)
        repo.save(account)
    return account


def test_every_n_events_strategy_snapshots_at_multiples(store):
    repo = account_repository(store, snapshot_strategy=EveryNEvents(3))
    _account_with_deposits(repo, 7)  # versions 1..8
    assert [s.version for s in store.list_snapshots("acc-1")] == [3, 6]


def test_callable_strategy_gets_version_and_events_since_snapshot(store):
    calls = []

    def strategy(version: int, since: int) -> bool:
        calls.append((version, since))
        return version == 2

    repo = account_repository(store, snapshot_strategy=strategy)
    _account_with_deposits(repo, 3)
    assert calls == [(1, 1), (2, 2), (3, 1), (4, 2)]
    assert [s.version for s in store.list_snapshots("acc-1")] == [2]


def test_strategy_counts_events_since_the_snapshot_a_loaded_aggregate_came_from(store):
    repo = account_repository(store, snapshot_strategy=EveryNEvents(4))
    _account_with_deposits(repo, 4)  # version 5, snapshot at 4
    loaded = repo.load("acc-1")
    assert loaded.snapshot_version == 4
    for amount in range(3):
        loaded.deposit(amount)
        repo.save(loaded)
    assert [s.version for s in store.list_snapshots("acc-1")] == [4, 8]


def test_repository_without_strategy_takes_no_snapshots(store):
    repo = account_repository(store)
    _account_with_deposits(repo, 5)
    assert store.list_snapshots("acc-1") == []


def test_load_from_latest_snapshot_gives_the_replayed_state(store):
    repo = account_repository(store, snapshot_strategy=EveryNEvents(4))
    _account_with_deposits(repo, 9)  # versions 1..10, snapshots at 4 and 8
    loaded = repo.load("acc-1")
    assert loaded.snapshot_version == 8
    assert loaded.version == loaded.stored_version == 10
    assert loaded.state.balance == 100 + sum(range(1, 10))
    assert list(loaded.state.history) == ["AccountOpened"] + ["MoneyDeposited"] * 9


def test_load_at_version_uses_nearest_snapshot_below_and_replays_the_rest(store):
    repo = account_repository(store, snapshot_strategy=EveryNEvents(5))
    _account_with_deposits(repo, 14)  # versions 1..15, snapshots at 5, 10, 15
    at7 = repo.load("acc-1", at_version=7)
    assert at7.version == 7
    assert at7.snapshot_version == 5
    assert at7.state.balance == 100 + sum(range(1, 7))
    assert len(at7.state.history) == 7


def test_load_at_version_equal_to_a_snapshot(store):
    repo = account_repository(store, snapshot_strategy=EveryNEvents(5))
    _account_with_deposits(repo, 12)
    at10 = repo.load("acc-1", at_version=10)
    assert (at10.version, at10.snapshot_version) == (10, 10)
    assert at10.state.balance == 100 + sum(range(1, 10))


def test_snapshot_with_another_schema_key_is_ignored(store):
    repo = account_repository(store)
    _account_with_deposits(repo, 3)
    bogus = pb.AccountState(account_id="acc-1", balance=999_999).SerializeToString()
    store.save_snapshot(Snapshot("acc-1", "Account", 4, "some-older-schema", bogus))
    loaded = repo.load("acc-1")
    assert loaded.state.balance == 106
    assert loaded.snapshot_version == 0


def test_snapshot_upcaster_turns_old_snapshot_into_current(store):
    old_schema = "v0"

    def upcast(snapshot: Snapshot) -> Snapshot | None:
        if snapshot.schema_key != old_schema:
            return None
        # v0 stored only the balance as text
        state = pb.AccountState(account_id=snapshot.aggregate_id, balance=int(snapshot.data))
        return replace(snapshot, schema_key=Account.schema_key, data=state.SerializeToString())

    writer = account_repository(store)
    _account_with_deposits(writer, 2)  # versions 1..3, balance 103
    store.save_snapshot(Snapshot("acc-1", "Account", 3, old_schema, b"500"))
    loaded = account_repository(store, snapshot_upcaster=upcast).load("acc-1")
    assert loaded.snapshot_version == 3
    assert loaded.state.balance == 500


def test_snapshot_upcaster_returning_none_means_replay(store):
    writer = account_repository(store)
    _account_with_deposits(writer, 2)
    store.save_snapshot(Snapshot("acc-1", "Account", 3, "v0", b"500"))
    loaded = account_repository(store, snapshot_upcaster=lambda s: None).load("acc-1")
    assert loaded.snapshot_version == 0
    assert loaded.state.balance == 103


class UnsnapshottableAccount(Account):
    def snapshot_state(self) -> bytes:
        raise RuntimeError("state too large to snapshot")


def test_failing_snapshot_is_logged_and_never_fails_the_command(store, caplog):
    repo = account_repository(store, snapshot_strategy=EveryNEvents(1))
    repo.factory = UnsnapshottableAccount
    account = UnsnapshottableAccount("acc-1")
    account.open("ann", 5)
    with caplog.at_level(logging.ERROR, logger="eventstore.repository"):
        result = repo.save_with_command(account, "cmd-1")
    assert result.already_processed is False
    assert account.stored_version == 1
    assert store.stream_version("acc-1") == 1
    assert store.list_snapshots("acc-1") == []
    assert any("acc-1" in r.getMessage() and r.exc_info for r in caplog.records)


def test_failing_strategy_is_logged_and_never_fails_the_command(store, caplog):
    def broken(version: int, since: int) -> bool:
        raise ZeroDivisionError("strategy bug")

    repo = account_repository(store, snapshot_strategy=broken)
    account = Account("acc-1")
    account.open("ann")
    with caplog.at_level(logging.ERROR, logger="eventstore.repository"):
        repo.save(account)
    assert store.stream_version("acc-1") == 1
    assert caplog.records


def test_save_snapshot_records_schema_key_and_state(store):
    repo = account_repository(store)
    account = _account_with_deposits(repo, 2)
    saved = repo.save_snapshot(account)
    got = store.latest_snapshot("acc-1")
    assert (got.version, got.schema_key, got.data) == (3, Account.schema_key, saved.data)
    assert pb.AccountState.FromString(got.data) == account.state
    assert account.snapshot_version == 3


def test_save_snapshot_of_an_aggregate_without_events_is_refused_and_load_finds_none(store):
    repo = account_repository(store)
    with pytest.raises(ValueError, match="no stored events") as caught:
        repo.save_snapshot(Account("ghost"))
    assert "Save its first events, then snapshot it" in str(caught.value)
    assert store.list_snapshots("ghost") == []
    with pytest.raises(AggregateNotFoundError):
        repo.load("ghost")


def test_save_snapshot_of_unsaved_aggregate_is_refused(store):
    repo = account_repository(store)
    account = Account("acc-1")
    account.open("ann")
    with pytest.raises(ValueError, match="unsaved"):
        repo.save_snapshot(account)


def test_strategy_without_snapshot_store_is_rejected():
    from eventstore import Repository

    class NoSnapshots:
        pass

    with pytest.raises(ValueError, match="snapshot store"):
        Repository(NoSnapshots(), Account, snapshot_strategy=EveryNEvents(2))  # type: ignore[arg-type]
