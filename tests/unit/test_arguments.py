"""Wrong arguments at the public entry points fail at the call, naming the argument."""

from __future__ import annotations

import math

import pytest

from eventstore import EventMetadata
from tests.support.bank import Account, account_repository, pb


@pytest.fixture
def repo(memory_store):  # type: ignore[no-untyped-def]
    repository = account_repository(memory_store)
    account = Account("acc-1")
    account.open("ann", 10)
    repository.save(account)
    return repository


@pytest.mark.parametrize("bad", [math.nan, 1.5, 1.0, True, "1"])
def test_load_refuses_an_at_version_that_is_not_a_whole_number(repo, bad):
    with pytest.raises(TypeError, match="at_version must be a whole number") as caught:
        repo.load("acc-1", at_version=bad)
    assert "'acc-1'" in str(caught.value) and type(bad).__name__ in str(caught.value)


def test_load_accepts_an_integral_at_version_of_another_int_type(repo):
    class Index(int):
        pass

    assert repo.load("acc-1", at_version=Index(1)).version == 1


def test_retry_on_conflict_refuses_an_empty_command_id_like_save_with_command(repo):
    calls = []
    with pytest.raises(ValueError, match="non-empty command id"):
        repo.retry_on_conflict("acc-1", calls.append, command_id="")
    with pytest.raises(ValueError, match="non-empty command id"):
        repo.save_with_command(repo.load("acc-1"), "")
    assert calls == []
    assert repo.store.stream_version("acc-1") == 1


@pytest.mark.parametrize("bad", [123, b"cmd-1", ["cmd-1"]])
def test_a_command_id_that_is_not_a_string_is_a_type_error_naming_the_argument(repo, bad):
    with pytest.raises(TypeError, match="command_id must be a non-empty str, got") as caught:
        repo.save_with_command(repo.load("acc-1"), bad)
    assert type(bad).__name__ in str(caught.value)
    with pytest.raises(TypeError, match="command_id must be a non-empty str or None"):
        repo.retry_on_conflict("acc-1", lambda account: None, command_id=bad)


def test_metadata_that_is_not_event_metadata_is_a_type_error_naming_the_argument(repo):
    account = repo.load("acc-1")
    account.deposit(1)
    meta = {"correlation_id": "c-1"}
    with pytest.raises(TypeError, match="metadata must be an EventMetadata or None, got dict"):
        repo.save(account, meta)
    with pytest.raises(TypeError, match="save_with_command: metadata must be an EventMetadata"):
        repo.save_with_command(account, "cmd-1", meta)
    with pytest.raises(TypeError, match="retry_on_conflict: metadata must be an EventMetadata"):
        repo.retry_on_conflict("acc-1", lambda a: a.deposit(1), metadata=meta)
    assert repo.store.stream_version("acc-1") == 1


def test_apply_change_refuses_metadata_or_constraints_of_the_wrong_type():
    account = Account("acc-1")
    with pytest.raises(TypeError, match="apply_change: metadata must be an EventMetadata"):
        account.apply_change(pb.MoneyDeposited(amount=1), {"principal_id": "u1"})
    with pytest.raises(TypeError, match="constraints must be UniqueConstraint objects, got tuple"):
        account.apply_change(pb.MoneyDeposited(amount=1), constraints=[("owner", "ann")])
    assert account.version == 0 and account.state.balance == 0
    account.apply_change(pb.MoneyDeposited(amount=1), EventMetadata(principal_id="u1"))
    assert account.version == 1
