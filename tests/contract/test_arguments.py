"""Wrong arguments to a store fail at the call, naming the argument, and write nothing.

What these guard against: a ``None`` event id reported as "already stored", a
``str`` of event types filtered letter by letter, a TTL of the wrong type
surfacing as an ``AttributeError``, an ``IntegerRangeError`` without its facts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from eventstore import IntegerRangeError, NewEvent, StreamAppend

from .builders import DEPOSITED, append_deposits, deposit, log_contents

MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (NewEvent(None, DEPOSITED, b""), r"events\[0\]\.event_id must be a non-empty str"),  # type: ignore[arg-type]
        (NewEvent("", DEPOSITED, b""), r"events\[0\]\.event_id must be a non-empty str"),
        (NewEvent("e-1", None, b""), r"events\[0\]\.event_type must be a non-empty str"),  # type: ignore[arg-type]
        (NewEvent("e-1", "", b""), r"events\[0\]\.event_type must be a non-empty str"),
        (NewEvent("e-1", DEPOSITED, None), r"events\[0\]\.data must be bytes"),  # type: ignore[arg-type]
        (NewEvent("e-1", DEPOSITED, "abc"), r"events\[0\]\.data must be bytes"),  # type: ignore[arg-type]
    ],
)
def test_an_event_with_a_missing_or_mistyped_field_is_refused_naming_it(store, event, message):
    with pytest.raises(TypeError, match=message):
        store.append("acc-1", "Account", 0, [event])
    with pytest.raises(TypeError, match=message):
        store.append_many([StreamAppend("acc-1", "Account", 0, [event])])
    assert log_contents(store) == ()


@pytest.mark.parametrize("bad", [None, "", 5])
def test_an_aggregate_type_that_is_not_a_name_is_refused(store, bad):
    with pytest.raises(TypeError, match="aggregate_type must be a non-empty str"):
        store.append("acc-1", bad, 0, [deposit()])
    assert log_contents(store) == ()


def test_one_event_id_twice_in_one_call_is_refused_as_such_not_as_already_stored(store):
    twin = deposit()
    with pytest.raises(ValueError, match="appear more than once in this call") as caught:
        store.append("acc-1", "Account", 0, [twin, twin])
    assert twin.event_id in str(caught.value)
    with pytest.raises(ValueError, match="appear more than once in this call"):
        store.append_many(
            [StreamAppend("a", "Account", 0, [twin]), StreamAppend("b", "Account", 0, [twin])]
        )
    assert log_contents(store) == ()


def test_a_command_ttl_that_is_not_a_timedelta_is_refused_naming_it(store):
    with pytest.raises(TypeError, match="command_ttl must be a datetime.timedelta"):
        store.append("acc-1", "Account", 0, [deposit()], command_id="c-1", command_ttl=5)
    with pytest.raises(TypeError, match="command_ttl must be a datetime.timedelta"):
        store.append_many(
            [StreamAppend("acc-1", "Account", 0, [deposit()])], command_id="c-1", command_ttl=5
        )
    assert log_contents(store) == ()


def test_a_command_ttl_too_long_to_count_keeps_the_record_for_good(store):
    store.append("acc-1", "Account", 0, [deposit()], command_id="c-1", command_ttl=timedelta.max)
    record = store.processed_command("c-1")
    assert record is not None and record.expires_at.year > 9000
    assert store.delete_expired_commands() == 0


def test_a_last_version_beyond_the_integers_names_the_version_and_the_events(store):
    with pytest.raises(IntegerRangeError) as caught:
        store.append("acc-1", "Account", MAX, [deposit()])
    assert (caught.value.name, caught.value.value) == ("expected_version", MAX)
    assert f"expected_version={MAX} plus 1 event is 2**63 or more" in str(caught.value)


@pytest.mark.parametrize(
    "read",
    [
        lambda store, types: store.read_all(event_types=types),
        lambda store, types: store.read_page(0, limit=10, event_types=types),
        lambda store, types: list(store.iter_all(event_types=types)),
        lambda store, types: store.follow(event_types=types),
    ],
)
def test_event_types_given_as_one_string_are_refused_not_read_letter_by_letter(store, read):
    append_deposits(store, "acc-1", 1)
    with pytest.raises(TypeError, match=r"event_types must be a list .*event_types=\["):
        read(store, DEPOSITED)


def test_event_types_may_be_any_iterable_of_names_read_once(store):
    append_deposits(store, "acc-1", 5)
    assert len(list(store.iter_all(event_types=(t for t in [DEPOSITED]), page_size=2))) == 5
    assert len(store.read_all(event_types={DEPOSITED})) == 5
    with pytest.raises(TypeError, match="event_types must hold event type names"):
        store.read_all(event_types=[DEPOSITED, 7])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.read_all("5"), TypeError, "after_position must be an int"),
        (lambda s: s.read_all(None), TypeError, "after_position must be an int"),
        (lambda s: s.read_all(limit="5"), TypeError, "limit must be an int >= 1"),
        (lambda s: s.read_page(0, limit=0), ValueError, "limit must be >= 1"),
        (lambda s: list(s.iter_all(page_size=1.5)), TypeError, "page_size must be an int"),
        (lambda s: s.save_checkpoint("c", "5"), TypeError, "'c': position must be an int"),
        (lambda s: s.save_checkpoint("c", -1), ValueError, "'c': position must be >= 0"),
    ],
)
def test_read_and_checkpoint_arguments_of_the_wrong_type_are_refused_naming_them(
    store, call, error, message
):
    with pytest.raises(error, match=message):
        call(store)


def test_bounds_beyond_the_integers_mean_no_bound_and_a_checkpoint_beyond_them_is_named(store):
    append_deposits(store, "acc-1", 3)
    assert len(store.read_all(limit=2**64)) == 3
    assert len(store.read_page(0, limit=2**64).events) == 3
    assert store.latest_snapshot("acc-1", 2**64) is None
    with pytest.raises(IntegerRangeError) as caught:
        store.save_checkpoint("c", 2**63)
    assert (caught.value.name, caught.value.value) == ("position", 2**63)


def test_a_metadata_of_the_wrong_type_in_a_unit_is_refused(store):
    bad = replace(deposit(), metadata={"correlation_id": "c-1"})
    with pytest.raises(TypeError, match=r"events\[0\].metadata must be an EventMetadata"):
        store.append_many([StreamAppend("acc-1", "Account", 0, [bad])])
    assert log_contents(store) == ()


def test_snapshot_versions_and_read_positions_beyond_the_integers_are_named(store):
    from eventstore import Snapshot

    with pytest.raises(IntegerRangeError) as caught:
        store.save_snapshot(Snapshot("acc-1", "Account", 2**63, "k", b""))
    assert (caught.value.name, caught.value.value) == ("version", 2**63)
    with pytest.raises(IntegerRangeError) as caught:
        store.read_page(2**63, limit=10)
    assert caught.value.name == "after_position"
    store.save_snapshot(Snapshot("acc-1", "Account", 1, "k", b""))
    assert store.keep_last_snapshots("acc-1", 2**70) == 0  # more than exist: keep them all
