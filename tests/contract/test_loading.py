"""Loading aggregates: replay, versions, upcasters, and the errors a bad stream raises."""

from __future__ import annotations

import pytest

from eventstore import (
    AggregateNotFoundError,
    EventDecodeError,
    NewEvent,
    Repository,
    Upcasters,
    VersionNotFoundError,
    new_event_id,
)
from tests.support.bank import EVENT_TYPES, Account, account_repository, pb

DEPOSITED_V1 = pb.MoneyDepositedV1.DESCRIPTOR.full_name


def _saved_account(repo, *amounts: int) -> Account:
    account = Account("acc-1")
    account.open("ann", 10)
    for amount in amounts:
        account.deposit(amount)
    repo.save(account)
    return account


def test_load_replays_events_into_state(store):
    repo = account_repository(store)
    _saved_account(repo, 5, 7)
    loaded = repo.load("acc-1")
    assert loaded.state.balance == 22
    assert loaded.state.owner == "ann"
    assert loaded.version == loaded.stored_version == 3
    assert loaded.uncommitted_events == ()


class _VersionWatchingAccount(Account):
    """An account whose apply_event records the version it sees, as user code may."""

    def apply_event(self, event) -> None:  # type: ignore[no-untyped-def]
        super().apply_event(event)
        self.state.history.append(f"seen at {self.version}")


def test_apply_event_sees_the_version_before_each_replayed_event(store):
    repo = Repository(store, _VersionWatchingAccount, event_types=EVENT_TYPES)
    account = _VersionWatchingAccount("acc-1")
    account.open("ann", 10)
    account.deposit(5)
    account.deposit(7)
    repo.save(account)
    loaded = repo.load("acc-1")
    assert [h for h in loaded.state.history if h.startswith("seen")] == [
        "seen at 0",
        "seen at 1",
        "seen at 2",
    ]
    assert loaded.version == loaded.stored_version == 3


def test_loaded_aggregate_can_be_changed_and_saved(store):
    repo = account_repository(store)
    _saved_account(repo, 5)
    loaded = repo.load("acc-1")
    loaded.withdraw(3)
    repo.save(loaded)
    assert repo.load("acc-1").state.balance == 12


def test_load_at_version_gives_state_as_of_that_version(store):
    repo = account_repository(store)
    _saved_account(repo, 5, 7, 11)
    at2 = repo.load("acc-1", at_version=2)
    assert at2.version == 2
    assert at2.state.balance == 15


def test_load_at_a_version_beyond_the_stream_raises_version_not_found(store):
    repo = account_repository(store)
    _saved_account(repo, 5)
    with pytest.raises(VersionNotFoundError) as info:
        repo.load("acc-1", at_version=9)
    assert (info.value.aggregate_id, info.value.requested, info.value.current) == ("acc-1", 9, 2)


def test_load_at_version_zero_is_rejected(store):
    repo = account_repository(store)
    _saved_account(repo)
    with pytest.raises(ValueError, match="at_version"):
        repo.load("acc-1", at_version=0)


def test_load_of_unknown_aggregate_raises_not_found_naming_it(store):
    repo = account_repository(store)
    with pytest.raises(AggregateNotFoundError) as info:
        repo.load("acc-404")
    assert info.value.aggregate_id == "acc-404"
    assert "acc-404" in str(info.value)


def test_exists_tells_stored_from_unknown(store):
    repo = account_repository(store)
    _saved_account(repo)
    assert repo.exists("acc-1") is True
    assert repo.exists("acc-404") is False


def _append_raw(store, aggregate_id: str, event_type: str, data: bytes) -> None:
    version = store.stream_version(aggregate_id)
    store.append(aggregate_id, "Account", version, [NewEvent(new_event_id(), event_type, data)])


def test_unknown_event_type_raises_decode_error_naming_event_position_and_type(store):
    repo = account_repository(store)
    _saved_account(repo)
    _append_raw(store, "acc-1", "testbank.v1.Mystery", b"")
    stored = store.read_all()[-1]
    with pytest.raises(EventDecodeError) as info:
        repo.load("acc-1")
    err = info.value
    assert (err.event_id, err.position, err.event_type) == (
        stored.event_id,
        stored.position,
        "testbank.v1.Mystery",
    )
    assert stored.event_id in str(err) and "testbank.v1.Mystery" in str(err)
    assert str(stored.position) in str(err)


def test_undecodable_bytes_raise_decode_error(store):
    repo = account_repository(store)
    _saved_account(repo)
    _append_raw(store, "acc-1", pb.MoneyDeposited.DESCRIPTOR.full_name, b"\xff\xff\xff")
    with pytest.raises(EventDecodeError) as info:
        repo.load("acc-1")
    assert info.value.event_type == pb.MoneyDeposited.DESCRIPTOR.full_name


def _v1_to_v2(event):  # type: ignore[no-untyped-def]
    old = pb.MoneyDepositedV1.FromString(event.data)
    new = pb.MoneyDeposited(amount=int(old.amount_text))
    return event.with_payload(pb.MoneyDeposited.DESCRIPTOR.full_name, new.SerializeToString())


def test_event_upcaster_runs_on_load(store):
    writer = account_repository(store)
    _saved_account(writer)
    _append_raw(
        store, "acc-1", DEPOSITED_V1, pb.MoneyDepositedV1(amount_text="15").SerializeToString()
    )
    upcasters = Upcasters()
    upcasters.register(DEPOSITED_V1, _v1_to_v2)
    loaded = account_repository(store, upcasters=upcasters).load("acc-1")
    assert loaded.state.balance == 25
    assert loaded.version == 2


def test_event_upcaster_does_not_rewrite_the_log(store):
    writer = account_repository(store)
    _saved_account(writer)
    _append_raw(
        store, "acc-1", DEPOSITED_V1, pb.MoneyDepositedV1(amount_text="15").SerializeToString()
    )
    upcasters = Upcasters()
    upcasters.register(DEPOSITED_V1, _v1_to_v2)
    account_repository(store, upcasters=upcasters).load("acc-1")
    assert store.read_all()[-1].event_type == DEPOSITED_V1


def test_old_event_without_upcaster_is_a_decode_error(store):
    writer = account_repository(store)
    _saved_account(writer)
    _append_raw(
        store, "acc-1", DEPOSITED_V1, pb.MoneyDepositedV1(amount_text="15").SerializeToString()
    )
    with pytest.raises(EventDecodeError):
        writer.load("acc-1")


def test_repository_decode_upcasts_a_stored_event(store):
    _append_raw(
        store, "acc-1", DEPOSITED_V1, pb.MoneyDepositedV1(amount_text="4").SerializeToString()
    )
    upcasters = Upcasters()
    upcasters.register(DEPOSITED_V1, _v1_to_v2)
    repo = account_repository(store, upcasters=upcasters)
    assert repo.decode(store.read_all()[0]) == pb.MoneyDeposited(amount=4)


def test_save_of_unchanged_aggregate_writes_nothing(store):
    repo = account_repository(store)
    _saved_account(repo)
    head = store.head_position()
    result = repo.save(repo.load("acc-1"))
    assert result.events == ()
    assert store.head_position() == head


def test_stale_save_raises_concurrency_error_and_keeps_aggregate(store):
    from eventstore import ConcurrencyError

    repo = account_repository(store)
    _saved_account(repo)
    first, second = repo.load("acc-1"), repo.load("acc-1")
    first.deposit(1)
    repo.save(first)
    second.deposit(2)
    with pytest.raises(ConcurrencyError) as info:
        repo.save(second)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert second.stored_version == 1 and len(second.uncommitted_events) == 1


def test_retry_on_conflict_creates_a_missing_aggregate(store):
    repo = account_repository(store)
    result = repo.retry_on_conflict("acc-new", lambda a: a.open("zoe", 3), command_id="cmd-1")
    assert [e.version for e in result.events] == [1]
    assert repo.load("acc-new").state.owner == "zoe"


def test_retry_on_conflict_retries_after_a_concurrent_change(store):
    repo = account_repository(store)
    _saved_account(repo)
    attempts = []

    def deposit_racing_once(account: Account) -> None:
        attempts.append(account.version)
        if len(attempts) == 1:  # someone else writes between our load and save
            other = repo.load("acc-1")
            other.deposit(100)
            repo.save(other)
        account.deposit(1)

    result = repo.retry_on_conflict("acc-1", deposit_racing_once, command_id="cmd-1")
    assert attempts == [1, 2]
    assert [e.version for e in result.events] == [3]
    assert repo.load("acc-1").state.balance == 111


def test_retry_on_conflict_gives_up_after_the_attempts(store):
    from eventstore import ConcurrencyError

    repo = account_repository(store)
    _saved_account(repo)
    calls = []

    def always_raced(account: Account) -> None:
        calls.append(1)
        other = repo.load("acc-1")
        other.deposit(1)
        repo.save(other)
        account.deposit(1)

    with pytest.raises(ConcurrencyError):
        repo.retry_on_conflict("acc-1", always_raced, attempts=3, backoff=0.0)
    assert len(calls) == 3
    assert store.stream_version("acc-1") == 4


def test_retry_on_conflict_rejects_zero_attempts(store):
    repo = account_repository(store)
    with pytest.raises(ValueError, match="attempts"):
        repo.retry_on_conflict("acc-1", lambda a: None, attempts=0)
