"""Appending: expected versions, gapless versions, commit-ordered positions, all or nothing."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from eventstore import (
    ConcurrencyError,
    EventMetadata,
    UniqueConstraint,
    UniqueConstraintError,
)

from .builders import DEPOSITED, append_deposits, deposit, log_contents, opened


def test_first_append_stores_versions_from_one(store):
    result = store.append("acc-1", "Account", 0, [deposit(), deposit(), deposit()])
    assert [e.version for e in result.events] == [1, 2, 3]
    assert [e.version for e in store.load_stream("acc-1")] == [1, 2, 3]


def test_versions_are_gapless_across_appends(store):
    store.append("acc-1", "Account", 0, [deposit()])
    store.append("acc-1", "Account", 1, [deposit(), deposit()])
    store.append("acc-1", "Account", 3, [deposit()])
    assert [e.version for e in store.load_stream("acc-1")] == [1, 2, 3, 4]
    assert store.stream_version("acc-1") == 4


def test_stream_version_of_unknown_aggregate_is_zero(store):
    assert store.stream_version("nobody") == 0


def test_append_returns_events_as_stored(store):
    result = store.append("acc-1", "Account", 0, [deposit(5), deposit(6)])
    assert list(result.events) == store.load_stream("acc-1")
    assert result.already_processed is False


def test_positions_are_unique_and_increase_in_commit_order(store):
    append_deposits(store, "a", 2)
    append_deposits(store, "b", 1)
    store.append("a", "Account", 2, [deposit(), deposit()])
    append_deposits(store, "b", 1)
    log = store.read_all()
    positions = [e.position for e in log]
    assert len(log) == 6
    assert positions == sorted(set(positions))
    assert [(e.aggregate_id, e.version) for e in log] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("a", 3),
        ("a", 4),
        ("b", 2),
    ]


def test_positions_returned_by_append_match_the_log(store):
    first = store.append("a", "Account", 0, [deposit(), deposit()]).events
    second = store.append("b", "Account", 0, [deposit()]).events
    assert [e.position for e in (*first, *second)] == [e.position for e in store.read_all()]


def test_stored_event_keeps_envelope_fields(store):
    meta = EventMetadata(
        causation_id="cmd-1",
        correlation_id="corr-1",
        principal_id="user-7",
        tenant_id="t-1",
        custom={"source": "test", "n": "1"},
    )
    new = deposit(42, metadata=meta, constraints=[UniqueConstraint("iban", "DE00")])
    store.append("acc-1", "Account", 0, [new])
    (event,) = store.load_stream("acc-1")
    assert event.event_id == new.event_id
    assert event.aggregate_id == "acc-1"
    assert event.aggregate_type == "Account"
    assert event.event_type == DEPOSITED
    assert event.data == new.data
    assert event.metadata == meta
    assert event.constraints == (UniqueConstraint("iban", "DE00"),)


def test_timestamp_is_commit_time_with_microsecond_precision(store):
    before = time.time_ns() // 1000
    store.append("acc-1", "Account", 0, [deposit()])
    after = time.time_ns() // 1000
    (event,) = store.read_all()
    assert before <= event.timestamp_micros <= after
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset().total_seconds() == 0
    whole = event.timestamp.replace(microsecond=0)
    assert (event.timestamp - whole).microseconds == event.timestamp_micros % 1_000_000


def test_load_stream_after_version(store):
    append_deposits(store, "acc-1", 5)
    assert [e.version for e in store.load_stream("acc-1", after_version=3)] == [4, 5]


def test_load_stream_up_to_version(store):
    append_deposits(store, "acc-1", 5)
    assert [e.version for e in store.load_stream("acc-1", 1, up_to_version=3)] == [2, 3]


def test_load_stream_payloads_are_load_streams_types_versions_and_data(store):
    append_deposits(store, "acc-1", 5)
    append_deposits(store, "other", 2)
    for after, up_to in [(0, None), (3, None), (1, 3), (5, None)]:
        expected = [
            (e.event_type, e.version, e.data) for e in store.load_stream("acc-1", after, up_to)
        ]
        rows = store.load_stream_payloads("acc-1", after, up_to)
        assert [(t, v, bytes(d)) for t, v, d in rows] == expected


def test_load_stream_holds_only_that_aggregate(store):
    append_deposits(store, "a", 2)
    append_deposits(store, "b", 3)
    assert {e.aggregate_id for e in store.load_stream("a")} == {"a"}


@pytest.mark.parametrize("expected", [0, 1, 3])
def test_wrong_expected_version_raises_concurrency_error_with_versions(store, expected):
    append_deposits(store, "acc-1", 2)
    with pytest.raises(ConcurrencyError) as info:
        store.append("acc-1", "Account", expected, [deposit()])
    assert info.value.aggregate_id == "acc-1"
    assert info.value.expected == expected
    assert info.value.actual == 2
    assert "acc-1" in str(info.value)


def test_concurrency_error_leaves_store_unchanged(store):
    append_deposits(store, "acc-1", 2)
    before = log_contents(store)
    head = store.head_position()
    with pytest.raises(ConcurrencyError):
        store.append("acc-1", "Account", 1, [deposit(), deposit()], command_id="cmd-x")
    assert log_contents(store) == before
    assert store.head_position() == head
    assert store.processed_command("cmd-x") is None


def test_concurrency_error_does_not_record_constraints(store):
    append_deposits(store, "acc-1", 1)
    with pytest.raises(ConcurrencyError):
        store.append("acc-1", "Account", 0, [deposit(constraints=[UniqueConstraint("k", "v")])])
    assert store.constraint_owner("k", "v") is None


def test_negative_expected_version_is_rejected(store):
    with pytest.raises(ValueError, match="expected_version"):
        store.append("acc-1", "Account", -1, [deposit()])


def test_failing_second_event_stores_none_of_the_command(store):
    store.append(
        "other", "Account", 0, [opened("bob", constraints=[UniqueConstraint("owner", "bob")])]
    )
    before = log_contents(store)
    with pytest.raises(UniqueConstraintError):
        store.append(
            "acc-1",
            "Account",
            0,
            [
                opened("ann", constraints=[UniqueConstraint("owner", "ann")]),
                deposit(constraints=[UniqueConstraint("owner", "bob")]),
            ],
            command_id="cmd-1",
        )
    assert log_contents(store) == before
    assert store.stream_version("acc-1") == 0
    assert store.constraint_owner("owner", "ann") is None
    assert store.processed_command("cmd-1") is None


def test_command_that_failed_can_be_stored_after_the_cause_is_fixed(store):
    store.append(
        "other", "Account", 0, [opened("bob", constraints=[UniqueConstraint("owner", "bob")])]
    )
    events = [
        opened("ann", constraints=[UniqueConstraint("owner", "ann")]),
        deposit(constraints=[UniqueConstraint("owner", "bob")]),
    ]
    with pytest.raises(UniqueConstraintError):
        store.append("acc-1", "Account", 0, events, command_id="cmd-1")
    fixed = [events[0], deposit()]
    result = store.append("acc-1", "Account", 0, fixed, command_id="cmd-1")
    assert result.already_processed is False
    assert [e.version for e in result.events] == [1, 2]


def test_duplicate_event_id_is_rejected_and_writes_nothing(store):
    first = deposit()
    store.append("acc-1", "Account", 0, [first])
    before = log_contents(store)
    with pytest.raises(Exception) as info:
        store.append("acc-2", "Account", 0, [deposit(), deposit(event_id=first.event_id)])
    assert first.event_id in str(info.value)
    assert log_contents(store) == before


def test_append_of_no_events_writes_nothing(store):
    result = store.append("acc-1", "Account", 0, [])
    assert result.events == ()
    assert store.head_position() == 0
    assert store.stream_version("acc-1") == 0


def test_append_of_an_already_stored_event_id_names_the_ids_and_writes_nothing(store):
    from eventstore import DuplicateEventIdError, NewEvent

    first = NewEvent("evt-fixed-1", "testbank.v1.MoneyDeposited", b"")
    store.append("acc-1", "Account", 0, [first])
    head = store.head_position()
    with pytest.raises(DuplicateEventIdError) as caught:
        store.append("acc-2", "Account", 0, [first])
    assert caught.value.aggregate_id == "acc-2"
    assert caught.value.event_ids == ["evt-fixed-1"]
    assert store.head_position() == head
    assert store.stream_version("acc-2") == 0


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"expected_version": 1.5}, TypeError, "expected_version must be an int"),
        ({"expected_version": True}, TypeError, "expected_version must be an int"),
        ({"command_id": 123}, TypeError, "command_id must be a non-empty str or None"),
        ({"command_id": ""}, ValueError, "non-empty command id"),
        ({"events": [b"raw"]}, TypeError, r"events\[0\] must be a NewEvent"),
        ({"events": deposit()}, TypeError, "events must be a sequence of NewEvent"),
        ({"aggregate_id": 7}, TypeError, "aggregate_id must be a non-empty str"),
    ],
)
def test_append_refuses_wrong_arguments_naming_them_and_writes_nothing(
    store, arguments, error, message
):
    call = {"aggregate_id": "acc-1", "expected_version": 0, "events": [deposit()]}
    call.update(arguments)
    with pytest.raises(error, match=message):
        store.append(call.pop("aggregate_id"), "Account", call.pop("expected_version"), **call)
    assert log_contents(store) == ()


def test_append_refuses_event_metadata_of_the_wrong_type(store):
    bad = replace(deposit(), metadata={"correlation_id": "c-1"})
    with pytest.raises(TypeError, match=r"events\[0\].metadata must be an EventMetadata"):
        store.append("acc-1", "Account", 0, [bad])
    assert log_contents(store) == ()
