"""Idempotent commands: a known command id returns the original result and writes nothing."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from eventstore import (
    DEFAULT_COMMAND_TTL,
    CommandIdConflictError,
    ConcurrencyError,
    EventMetadata,
    UniqueConstraint,
    deterministic_event_id,
)
from eventstore.tenancy import with_tenant
from tests.support.bank import Account, account_repository, pb

from .builders import command_events, deposit, log_contents, opened

TINY_TTL = timedelta(microseconds=1)


def _expire() -> None:
    """Let a command recorded with TINY_TTL expire (the clock moves at least 1 ms)."""
    time.sleep(0.002)


# -- the store port ---------------------------------------------------------------------------
def test_append_with_known_command_id_returns_original_events(store):
    first = store.append(
        "acc-1", "Account", 0, command_events("cmd-1", "acc-1", 2), command_id="cmd-1"
    )
    again = store.append(
        "acc-1", "Account", 0, command_events("cmd-1", "acc-1", 2), command_id="cmd-1"
    )
    assert again.already_processed is True
    assert list(again.events) == list(first.events)
    assert again.processed_at == first.processed_at


def test_known_command_id_is_checked_before_the_expected_version(store):
    store.append("acc-1", "Account", 0, command_events("cmd-1", "acc-1", 1), command_id="cmd-1")
    store.append("acc-1", "Account", 1, [deposit()])
    again = store.append("acc-1", "Account", 0, [deposit()], command_id="cmd-1")
    assert again.already_processed is True
    assert [e.version for e in again.events] == [1]


def test_known_command_id_is_checked_before_constraints(store):
    store.append("other", "Account", 0, [opened(constraints=[UniqueConstraint("owner", "x")])])
    store.append("acc-1", "Account", 0, [deposit()], command_id="cmd-1")
    again = store.append(
        "acc-1",
        "Account",
        1,
        [deposit(constraints=[UniqueConstraint("owner", "x")])],
        command_id="cmd-1",
    )
    assert again.already_processed is True


def test_repeated_command_writes_nothing(store):
    store.append("acc-1", "Account", 0, command_events("cmd-1", "acc-1", 2), command_id="cmd-1")
    before = log_contents(store)
    store.append("acc-1", "Account", 2, [deposit(), deposit()], command_id="cmd-1")
    assert log_contents(store) == before


def test_command_id_reused_on_another_aggregate_is_refused_and_writes_nothing(store):
    store.append("acc-1", "Account", 0, [deposit()], command_id="cmd-1")
    before = log_contents(store)
    with pytest.raises(CommandIdConflictError) as caught:
        store.append("acc-2", "Account", 0, [deposit()], command_id="cmd-1")
    assert (caught.value.command_id, caught.value.aggregate_id) == ("cmd-1", "acc-2")
    assert log_contents(store) == before
    assert store.processed_command("cmd-1").aggregate_id == "acc-1"


def test_command_id_conflict_names_the_other_aggregate_in_the_log_only(store, caplog):
    store.append("acc-1", "Account", 0, [deposit()], command_id="cmd-1")
    with caplog.at_level(logging.WARNING), pytest.raises(CommandIdConflictError) as caught:
        store.append("acc-2", "Account", 0, [deposit()], command_id="cmd-1")
    text = str(caught.value)
    assert "'cmd-1'" in text and "'acc-2'" in text and "acc-1" not in text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'cmd-1'" in m and "'acc-1'" in m and "'acc-2'" in m for m in warnings)


def test_command_id_reused_by_a_command_that_stores_nothing_is_refused(store):
    store.append("acc-1", "Account", 0, [deposit()], command_id="cmd-1")
    with pytest.raises(CommandIdConflictError):
        store.append("acc-2", "Account", 0, [], command_id="cmd-1")
    with pytest.raises(CommandIdConflictError):
        store.find_command("cmd-1", "acc-2")
    assert store.processed_command("cmd-1").aggregate_id == "acc-1"


def test_processed_command_records_events_and_expiry(store):
    result = store.append(
        "acc-1", "Account", 0, command_events("cmd-1", "acc-1", 2), command_id="cmd-1"
    )
    record = store.processed_command("cmd-1")
    assert record.command_id == "cmd-1"
    assert record.aggregate_id == "acc-1"
    assert record.event_ids == tuple(e.event_id for e in result.events)
    assert record.expires_at - record.processed_at == DEFAULT_COMMAND_TTL


def test_unknown_command_has_no_record(store):
    assert store.processed_command("never") is None
    assert store.find_command("never", "acc-1") is None


def test_find_command_returns_original_result(store):
    first = store.append(
        "acc-1", "Account", 0, command_events("cmd-1", "acc-1", 2), command_id="cmd-1"
    )
    found = store.find_command("cmd-1", "acc-1")
    assert found.already_processed is True
    assert list(found.events) == list(first.events)


def test_retry_after_record_expired_is_recognised_by_event_ids(store):
    first = store.append(
        "acc-1",
        "Account",
        0,
        command_events("cmd-1", "acc-1", 3),
        command_id="cmd-1",
        command_ttl=TINY_TTL,
    )
    _expire()
    again = store.append(
        "acc-1", "Account", 0, command_events("cmd-1", "acc-1", 3), command_id="cmd-1"
    )
    assert again.already_processed is True
    assert list(again.events) == list(first.events)
    assert store.stream_version("acc-1") == 3


def test_retry_after_record_was_deleted_is_recognised_by_event_ids(store):
    store.append("acc-1", "Account", 0, command_events("cmd-1", "acc-1", 2), command_id="cmd-1")
    assert store.delete_expired_commands(datetime.now(UTC) + DEFAULT_COMMAND_TTL * 2) == 1
    assert store.processed_command("cmd-1") is None
    again = store.append(
        "acc-1", "Account", 2, command_events("cmd-1", "acc-1", 2), command_id="cmd-1"
    )
    assert again.already_processed is True
    assert store.stream_version("acc-1") == 2


def test_delete_expired_commands_keeps_live_records(store, monkeypatch):
    # An append sweeps expired records by chance (1 in 1,000): not here, or the count
    # below would be 0 once in a while.
    import eventstore.postgres.store as postgres_store
    import eventstore.sqlite.group_commit as group_commit
    import eventstore.sqlite.store as sqlite_store

    for module in (sqlite_store, group_commit, postgres_store):
        monkeypatch.setattr(module, "_EXPIRY_SWEEP_CHANCE", 0)
    store.append("acc-1", "Account", 0, [deposit()], command_id="old", command_ttl=TINY_TTL)
    store.append("acc-1", "Account", 1, [deposit()], command_id="live")
    _expire()
    assert store.delete_expired_commands() == 1
    assert store.processed_command("old") is None
    assert store.processed_command("live") is not None


def test_delete_expired_commands_with_nothing_expired_deletes_nothing(store):
    store.append("acc-1", "Account", 0, [deposit()], command_id="cmd-1")
    assert store.delete_expired_commands() == 0


# -- through the repository ---------------------------------------------------------------------
def _opened_account(account_id: str = "acc-1", owner: str = "ann") -> Account:
    account = Account(account_id)
    account.open(owner, 100)
    return account


def test_save_with_command_returns_result_and_clears_uncommitted(store):
    repo = account_repository(store)
    account = _opened_account()
    account.deposit(5)
    result = repo.save_with_command(account, "cmd-1")
    assert result.command_id == "cmd-1"
    assert result.already_processed is False
    assert [e.version for e in result.events] == [1, 2]
    assert result.processed_at is not None
    assert account.uncommitted_events == ()
    assert account.version == account.stored_version == 2


def test_save_with_command_uses_deterministic_event_ids(store):
    repo = account_repository(store)
    account = _opened_account()
    account.deposit(5)
    result = repo.save_with_command(account, "cmd-1")
    assert [e.event_id for e in result.events] == [
        deterministic_event_id("cmd-1", "acc-1", 0),
        deterministic_event_id("cmd-1", "acc-1", 1),
    ]


def test_event_ids_index_from_zero_within_each_command(store):
    repo = account_repository(store)
    account = _opened_account()
    repo.save_with_command(account, "cmd-1")
    account.deposit(1)
    result = repo.save_with_command(account, "cmd-2")
    assert result.events[0].event_id == deterministic_event_id("cmd-2", "acc-1", 0)


def test_repeated_command_returns_original_result_and_writes_nothing(store):
    repo = account_repository(store)
    first = repo.save_with_command(_opened_account(), "cmd-1")
    before = log_contents(store)
    again = repo.save_with_command(_opened_account(), "cmd-1")
    assert again.already_processed is True
    assert list(again.events) == list(first.events)
    assert again.processed_at == first.processed_at
    assert log_contents(store) == before


def test_repeated_command_brings_the_aggregate_to_its_stored_state(store):
    repo = account_repository(store)
    repo.save_with_command(_opened_account(), "cmd-1")
    retry = _opened_account()
    retry.deposit(9)
    result = repo.save_with_command(retry, "cmd-1")
    assert result.already_processed is True
    assert retry.uncommitted_events == ()
    assert retry.version == retry.stored_version == 1
    assert retry.state.balance == 100


def test_next_command_after_an_already_processed_save_stores_only_its_own_change(store):
    # A notebook cell re-run: +50 saved under a literal command id, then run again.
    repo = account_repository(store)
    account = Account("acc-1")
    account.deposit(50)
    repo.save_with_command(account, "cmd-1")
    account.deposit(50)
    again = repo.save_with_command(account, "cmd-1")
    assert again.already_processed is True
    assert account.state.balance == 50
    account.deposit(1)
    repo.save_with_command(account, "cmd-2")
    assert repo.load("acc-1").state.balance == 51
    assert store.stream_version("acc-1") == 2


def test_repeated_command_on_a_new_aggregate_that_stored_nothing_resets_it_to_empty(store):
    repo = account_repository(store)
    repo.save_with_command(Account("acc-1"), "cmd-0")  # decided there was nothing to do
    retry = _opened_account()
    result = repo.save_with_command(retry, "cmd-0")
    assert result.already_processed is True and result.events == ()
    assert retry.version == 0 and retry.uncommitted_events == ()
    assert retry.state.balance == 0
    assert store.stream_version("acc-1") == 0


def test_command_id_of_another_aggregate_is_refused_through_the_repository(store):
    repo = account_repository(store)
    repo.save_with_command(_opened_account("acc-1"), "cmd-1")
    with pytest.raises(CommandIdConflictError):
        repo.save_with_command(_opened_account("acc-2"), "cmd-1")
    calls = []
    with pytest.raises(CommandIdConflictError):
        repo.retry_on_conflict("acc-2", calls.append, command_id="cmd-1")
    assert calls == []
    assert store.stream_version("acc-2") == 0


def test_repeated_command_is_reported_before_the_version_conflict(store):
    repo = account_repository(store)
    account = _opened_account()
    repo.save_with_command(account, "cmd-1")
    account.deposit(1)
    repo.save(account)
    stale = _opened_account()  # expected version 0, stream at 2
    assert repo.save_with_command(stale, "cmd-1").already_processed is True


def test_repeated_command_is_reported_before_the_constraint_check(store):
    repo = account_repository(store)
    repo.save_with_command(_opened_account("acc-1", "bob"), "cmd-1")
    rival = Account("acc-2")
    rival.open("ann", unique_owner=True)
    repo.save(rival)
    retry = repo.load("acc-1")
    retry.apply_change(
        pb.MoneyDeposited(amount=1), constraints=[UniqueConstraint("account_owner", "ann")]
    )
    # acc-1 may not claim "ann", but cmd-1 is known: the original result wins.
    assert repo.save_with_command(retry, "cmd-1").already_processed is True


def test_retry_after_command_record_expired_is_already_processed(store):
    repo = account_repository(store, command_ttl=TINY_TTL)
    first = repo.save_with_command(_opened_account(), "cmd-1")
    _expire()
    again = repo.save_with_command(_opened_account(), "cmd-1")
    assert again.already_processed is True
    assert list(again.events) == list(first.events)
    assert store.stream_version("acc-1") == 1


def test_retry_after_command_record_was_cleaned_up_is_already_processed(store):
    repo = account_repository(store)
    account = _opened_account()
    account.deposit(3)
    repo.save_with_command(account, "cmd-1")
    store.delete_expired_commands(datetime.now(UTC) + DEFAULT_COMMAND_TTL * 2)
    retry = _opened_account()
    retry.deposit(3)
    again = repo.save_with_command(retry, "cmd-1")
    assert again.already_processed is True
    assert [e.version for e in again.events] == [1, 2]


def test_a_tenants_retry_after_its_record_expired_is_already_processed(store):
    # The ids of a tenant's events come from the command id the store keys (the
    # tenant's), or the store could not recognise them once the record is gone.
    repo = account_repository(store, tenant_isolation=True)
    with with_tenant("acme"):
        account = _opened_account()
        account.deposit(3)
        first = repo.save_with_command(account, "cmd-1")
        store.delete_expired_commands(datetime.now(UTC) + DEFAULT_COMMAND_TTL * 2)
        retry = _opened_account()
        retry.deposit(3)
        again = repo.save_with_command(retry, "cmd-1")
        rerun = repo.retry_on_conflict("acc-1", lambda a: a.deposit(3), command_id="cmd-1")
    assert again.already_processed is True and rerun.already_processed is True
    assert list(again.events) == list(first.events) == list(rerun.events)
    assert store.stream_version("acme::acc-1") == 2


def test_a_tenants_conflict_names_the_aggregate_by_the_id_the_tenant_gave(store):
    repo = account_repository(store, tenant_isolation=True)
    with with_tenant("acme"):
        repo.save(_opened_account())
        stale = _opened_account()  # version 0, while the stored one is at 1
        stale.deposit(1)
        with pytest.raises(ConcurrencyError) as caught:
            repo.save(stale)
    assert (caught.value.aggregate_id, caught.value.expected, caught.value.actual) == (
        "acc-1",
        0,
        1,
    )
    assert "acme" not in str(caught.value)


def test_the_same_command_id_in_two_tenants_is_two_commands(store):
    repo = account_repository(store, tenant_isolation=True)
    for tenant in ("acme", "beta"):
        with with_tenant(tenant):
            assert repo.save_with_command(_opened_account(), "cmd-1").already_processed is False
    assert store.stream_version("acme::acc-1") == store.stream_version("beta::acc-1") == 1


def test_retry_on_conflict_with_known_command_does_not_run_the_command(store):
    repo = account_repository(store)
    repo.save_with_command(_opened_account(), "cmd-1")
    calls = []
    result = repo.retry_on_conflict("acc-1", calls.append, command_id="cmd-1")
    assert result.already_processed is True
    assert calls == []


def test_save_without_command_id_uses_random_distinct_ids(store):
    repo = account_repository(store)
    a, b = _opened_account("a"), _opened_account("b")
    a.deposit(1)
    repo.save(a)
    repo.save(b)
    ids = [e.event_id for e in store.read_all()]
    assert len(set(ids)) == 3
    assert ids[0] != deterministic_event_id("", "a", 0)


def test_command_id_becomes_causation_id(store):
    repo = account_repository(store)
    account = _opened_account()
    account.deposit(1)
    repo.save_with_command(account, "cmd-1")
    assert [e.metadata.causation_id for e in store.read_all()] == ["cmd-1", "cmd-1"]


def test_metadata_causation_id_overrides_the_command_id(store):
    repo = account_repository(store)
    meta = EventMetadata(causation_id="upstream-event", correlation_id="corr-1", principal_id="u1")
    repo.save_with_command(_opened_account(), "cmd-1", meta)
    (event,) = store.read_all()
    assert event.metadata.causation_id == "upstream-event"
    assert event.metadata.correlation_id == "corr-1"
    assert event.metadata.principal_id == "u1"


def test_per_event_metadata_overrides_save_metadata(store):
    repo = account_repository(store)
    account = Account("acc-1")
    account.open("ann")
    account.apply_change(
        pb.MoneyDeposited(amount=2), EventMetadata(causation_id="by-event", custom={"k": "v"})
    )
    repo.save_with_command(account, "cmd-1", EventMetadata(tenant_id="t1"))
    opened_event, deposited = store.read_all()
    assert opened_event.metadata.causation_id == "cmd-1"
    assert deposited.metadata.causation_id == "by-event"
    assert deposited.metadata.tenant_id == "t1"
    assert deposited.metadata.custom == {"k": "v"}


def test_save_with_command_rejects_an_empty_command_id(store):
    repo = account_repository(store)
    with pytest.raises(ValueError, match="command id"):
        repo.save_with_command(_opened_account(), "")


def test_retry_after_record_expired_is_recognised_before_a_constraint_that_now_fails(store):
    claim = [UniqueConstraint("account_owner", "ann")]
    store.append("acc-1", "Account", 0, [opened("ann", constraints=claim)], command_id="cmd-9")
    # cmd-1 stored one event on acc-2, and its record expired. Its retry passes the version
    # check but claims a value acc-1 owns: it must be reported as done, not as a conflict.
    first = store.append(
        "acc-2",
        "Account",
        0,
        command_events("cmd-1", "acc-2", 1),
        command_id="cmd-1",
        command_ttl=TINY_TTL,
    )
    _expire()
    retry = [replace(ev, constraints=tuple(claim)) for ev in command_events("cmd-1", "acc-2", 1)]
    again = store.append("acc-2", "Account", 1, retry, command_id="cmd-1")
    assert again.already_processed is True
    assert list(again.events) == list(first.events)
    assert store.constraint_owner("account_owner", "ann") == "acc-1"


@pytest.fixture
def no_chance_sweeps(monkeypatch):
    """Stores sweep expired records after about one command in a thousand, at random: a test
    that counts what a sweep deletes must not race one (it did, about once in 120 runs)."""
    import importlib

    for name in (
        "eventstore.sqlite.store",
        "eventstore.sqlite.group_commit",
        "eventstore.postgres.store",
    ):
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "_EXPIRY_SWEEP_CHANCE", 0.0)


def test_sweep_deletes_only_expired_records_in_bounded_batches(store, no_chance_sweeps):
    for i in range(5):
        store.append(
            f"acc-{i}",
            "Account",
            0,
            [deposit()],
            command_id=f"old-{i}",
            command_ttl=TINY_TTL,
        )
    for i in range(3):
        store.append(f"live-{i}", "Account", 0, [deposit()], command_id=f"new-{i}")
    _expire()
    # 8 records, swept 3 at a time in key order: new-0..2 | old-0..2 | old-3..4, then wrap.
    assert store.sweep_expired_commands(batch=3) == 0
    assert store.sweep_expired_commands(batch=3) == 3
    assert store.sweep_expired_commands(batch=3) == 2
    assert store.sweep_expired_commands(batch=3) == 0  # wrapped: only live records remain
    assert [store.processed_command(f"new-{i}") is not None for i in range(3)] == [True] * 3
    assert all(store.processed_command(f"old-{i}") is None for i in range(5))


def test_zero_event_retry_after_expiry_is_recognised_and_keeps_the_original_result(store):
    first = store.append(
        "acc-1",
        "Account",
        0,
        command_events("cmd-1", "acc-1", 1),
        command_id="cmd-1",
        command_ttl=TINY_TTL,
    )
    _expire()
    # This time the command decides there is nothing to do: it must still be "done".
    again = store.append("acc-1", "Account", 1, [], command_id="cmd-1")
    assert again.already_processed is True
    assert list(again.events) == list(first.events)
    later = store.find_command("cmd-1", "acc-1")
    assert later is not None
    assert list(later.events) == list(first.events)


def test_expired_command_id_reused_on_another_aggregate_keeps_each_result(store):
    on_c = store.append(
        "acc-c",
        "Account",
        0,
        command_events("cmd-2", "acc-c", 1),
        command_id="cmd-2",
        command_ttl=TINY_TTL,
    )
    _expire()
    on_d = store.append(
        "acc-d", "Account", 0, command_events("cmd-2", "acc-d", 1), command_id="cmd-2"
    )
    assert on_d.already_processed is False
    retry_on_c = store.append(
        "acc-c", "Account", 1, command_events("cmd-2", "acc-c", 1), command_id="cmd-2"
    )
    assert retry_on_c.already_processed is True
    assert list(retry_on_c.events) == list(on_c.events)
    assert store.find_command("cmd-2", "acc-c").events == on_c.events


class _CommitsDuringLoad:
    """An event store whose first stream read lets another writer commit a command first."""

    def __init__(self, store, commit):
        self._store = store
        self._commit = commit

    def load_stream(self, *args, **kwargs):
        if self._commit is not None:
            commit, self._commit = self._commit, None
            commit()
        return self._store.load_stream(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_retry_on_conflict_returns_the_original_when_the_command_commits_during_load(store):
    def other_sender_opens() -> None:
        account_repository(store).save_with_command(_opened_account(), "open-1")

    repo = account_repository(_CommitsDuringLoad(store, other_sender_opens))
    calls = []

    def open_account(account):
        calls.append(account.version)
        account.open("ann", 100)  # raises ALREADY_OPEN if it sees the other sender's event

    result = repo.retry_on_conflict("acc-1", open_account, command_id="open-1")
    assert result.already_processed is True
    assert calls == []
    assert store.stream_version("acc-1") == 1


@pytest.mark.parametrize("how", ["save", "retry_on_conflict"])
def test_a_tenants_command_id_conflict_names_the_ids_it_sent(store, how):
    # It named the stored 'beta::c1' and 'beta::p2', unlike every other error of a
    # tenant-isolated repository (a client resends what it sent).
    repo = account_repository(store, tenant_isolation=True)
    with with_tenant("beta"):
        first = Account("p1")
        first.open("Ann")
        repo.save_with_command(first, "c1")
        with pytest.raises(CommandIdConflictError) as caught:
            if how == "save":
                second = Account("p2")
                second.open("Bob")
                repo.save_with_command(second, "c1")
            else:
                repo.retry_on_conflict("p2", lambda a: a.open("Bob"), command_id="c1")
    assert (caught.value.command_id, caught.value.aggregate_id) == ("c1", "p2")
    assert "beta::" not in str(caught.value)


def test_a_tenant_isolated_repository_used_with_no_tenant_says_how_to_name_one(store):
    from eventstore.core.errors import TenantMismatchError

    repo = account_repository(store, tenant_isolation=True)
    with pytest.raises(TenantMismatchError) as caught:
        repo.load("p1")
    assert "Es-Tenant-Id" in caught.value.solution and "with_tenant" in caught.value.solution
    with pytest.raises(TenantMismatchError) as caught:
        repo.event_log()
    assert "aggregate ''" not in str(caught.value) and "this call" in str(caught.value)


def test_a_sweep_that_meets_a_closed_store_logs_nothing(store, caplog):
    # The sweep runs after the commit, on the writing thread: a close() that lands
    # between the two made it log a StoreClosedError traceback for a command that
    # was stored. The next store object sweeps instead; nothing is wrong.
    store.append("acc-1", "Account", 0, [deposit()], command_id="cmd-1", command_ttl=TINY_TTL)
    store.close()
    with caplog.at_level("DEBUG"):
        store._sweep_after_commit()
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")] == []
