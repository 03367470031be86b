"""Errors name the thing, the cause and the fix, and carry the facts as attributes."""

from __future__ import annotations

import pickle

import pytest

from eventstore import (
    AggregateNotFoundError,
    AppError,
    ConcurrencyError,
    EventDecodeError,
    EventStoreError,
    UniqueConstraintError,
    UniqueConstraintReleaseError,
    VersionNotFoundError,
)


def test_concurrency_error_names_aggregate_versions_and_fix():
    err = ConcurrencyError("acc-42", 7, 9)
    assert (err.aggregate_id, err.expected, err.actual) == ("acc-42", 7, 9)
    text = str(err)
    assert "'acc-42'" in text and "expected version 7" in text and "found 9" in text
    assert "retry_on_conflict" in text


def test_aggregate_not_found_names_id_type_and_fix():
    err = AggregateNotFoundError("acc-1", "Account")
    assert (err.aggregate_id, err.aggregate_type) == ("acc-1", "Account")
    assert "Account aggregate 'acc-1'" in str(err)
    assert "Check the id" in str(err)
    assert isinstance(err, LookupError)


def test_version_not_found_names_the_range():
    err = VersionNotFoundError("acc-1", 12, 5)
    assert (err.aggregate_id, err.requested, err.current) == ("acc-1", 12, 5)
    assert "no version 12" in str(err) and "from 1 to 5" in str(err)


def test_unique_constraint_error_names_index_value_owner_and_requester():
    err = UniqueConstraintError("email", "a@x", "user-1", "user-2")
    assert (err.index, err.value, err.owner, err.requester) == ("email", "a@x", "user-1", "user-2")
    text = str(err)
    assert "'email'" in text and "'a@x'" in text and "'user-1'" in text and "'user-2'" in text
    assert "release" in text


def test_release_error_by_non_owner_names_owner():
    err = UniqueConstraintReleaseError("email", "a@x", "user-1", "user-2")
    assert isinstance(err, UniqueConstraintError)
    assert "owned by 'user-1'" in str(err) and "Only the owner" in str(err)


def test_release_error_of_unclaimed_value_says_nobody_claimed_it():
    err = UniqueConstraintReleaseError("email", "a@x", None, "user-2")
    assert "nobody has claimed" in str(err)
    assert "rebuild_constraints" in str(err)


def test_event_decode_error_names_event_position_type_and_fix():
    err = EventDecodeError("e-9", 31, "bank.v1.Gone")
    assert (err.event_id, err.position, err.event_type) == ("e-9", 31, "bank.v1.Gone")
    text = str(err)
    assert "'e-9'" in text and "position 31" in text and "'bank.v1.Gone'" in text
    assert "Register" in text


def test_event_decode_error_includes_the_cause():
    assert "bytes do not parse" in str(EventDecodeError("e", 1, "t", "bytes do not parse"))


def test_app_error_carries_code_message_solution_details():
    err = AppError("INSUFFICIENT_FUNDS", "balance 5 < 10", "Deposit first.", {"balance": "5"})
    assert (err.code, err.message, err.solution) == (
        "INSUFFICIENT_FUNDS",
        "balance 5 < 10",
        "Deposit first.",
    )
    assert err.details == {"balance": "5"}
    assert str(err) == "[INSUFFICIENT_FUNDS] balance 5 < 10 Deposit first."


def test_app_error_copies_its_details():
    details = {"a": "1"}
    err = AppError("X", "m", details=details)
    details["a"] = "2"
    assert err.details == {"a": "1"}


def test_app_error_pickles_with_all_fields():
    err = AppError("INSUFFICIENT_FUNDS", "balance 5 < 10", "Deposit first.", {"balance": "5"})
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is AppError
    assert (copy.code, copy.message, copy.solution, copy.details) == (
        err.code,
        err.message,
        err.solution,
        err.details,
    )
    assert str(copy) == str(err)


@pytest.mark.parametrize(
    "err",
    [
        ConcurrencyError("acc-1", 1, 2),
        AggregateNotFoundError("acc-1", "Account"),
        VersionNotFoundError("acc-1", 3, 2),
        UniqueConstraintError("i", "v", "o", "r"),
        UniqueConstraintReleaseError("i", "v", None, "r"),
        EventDecodeError("e", 1, "t", "why"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling_between_processes(err):
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert vars(copy) == vars(err)


def test_all_framework_errors_share_a_base_class():
    for cls in (
        AggregateNotFoundError,
        AppError,
        ConcurrencyError,
        EventDecodeError,
        UniqueConstraintError,
        VersionNotFoundError,
    ):
        assert issubclass(cls, EventStoreError)
