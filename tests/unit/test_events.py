"""The event envelope and its metadata: JSON round trips, lazy decoding, precise timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ConstraintOp, Event, EventMetadata, UniqueConstraint
from eventstore.core.events import micros_from_timestamp, timestamp_from_micros


def _event(**overrides) -> Event:  # type: ignore[no-untyped-def]
    fields = dict(
        event_id="e-1",
        aggregate_id="acc-1",
        aggregate_type="Account",
        event_type="testbank.v1.MoneyDeposited",
        version=3,
        position=17,
        timestamp_micros=1_700_000_000_123_456,
        data=b"\x08\x05",
        metadata_json=None,
        constraints_json=None,
    )
    fields.update(overrides)
    return Event(**fields)


# -- EventMetadata --------------------------------------------------------------------------------
def test_metadata_json_round_trip_keeps_every_field():
    meta = EventMetadata("cause", "corr", "user-1", "tenant-1", {"ip": "10.0.0.1", "é": "ü"})
    assert EventMetadata.from_json(meta.to_json()) == meta


def test_empty_metadata_is_stored_as_nothing():
    assert EventMetadata().to_json() is None
    assert EventMetadata.from_json(None) == EventMetadata()
    assert EventMetadata.from_json("") == EventMetadata()


def test_metadata_json_is_compact():
    text = EventMetadata(causation_id="c").to_json()
    assert text is not None and " " not in text
    assert json.loads(text)


text_values = st.text(max_size=20)


@settings(max_examples=50, deadline=None)
@given(
    st.builds(
        EventMetadata,
        causation_id=text_values,
        correlation_id=text_values,
        principal_id=text_values,
        tenant_id=text_values,
        custom=st.dictionaries(text_values, text_values, max_size=4),
    )
)
def test_any_metadata_survives_the_json_round_trip(meta):
    assert EventMetadata.from_json(meta.to_json()) == meta


def test_merged_prefers_the_other_non_empty_fields():
    base = EventMetadata(causation_id="cmd", tenant_id="t1", custom={"a": "1", "b": "1"})
    over = EventMetadata(causation_id="evt", principal_id="u", custom={"b": "2"})
    merged = base.merged(over)
    assert merged == EventMetadata("evt", "", "u", "t1", {"a": "1", "b": "2"})
    assert base.merged(None) is base


# -- Event ----------------------------------------------------------------------------------------
def test_metadata_is_decoded_only_when_read():
    event = _event(metadata_json="{not json")
    assert event.event_id == "e-1"  # constructing and reading the envelope does not decode
    with pytest.raises(json.JSONDecodeError):
        _ = event.metadata


def test_constraints_are_decoded_only_when_read():
    event = _event(constraints_json="[[broken")
    assert event.version == 3
    with pytest.raises(json.JSONDecodeError):
        _ = event.constraints


def test_metadata_and_constraints_decode_from_stored_form():
    meta = EventMetadata(causation_id="cmd-1", custom={"k": "v"})
    event = _event(
        metadata_json=meta.to_json(),
        constraints_json=json.dumps([["owner", "ann", "claim"], ["iban", "X", "release"]]),
    )
    assert event.metadata == meta
    assert event.constraints == (
        UniqueConstraint("owner", "ann"),
        UniqueConstraint("iban", "X", ConstraintOp.RELEASE),
    )


def test_event_without_metadata_has_empty_metadata():
    assert _event().metadata == EventMetadata()
    assert _event().constraints == ()


def test_timestamp_keeps_microseconds_in_utc():
    event = _event(timestamp_micros=1_700_000_000_123_456)
    assert event.timestamp == datetime(2023, 11, 14, 22, 13, 20, 123_456, tzinfo=UTC)
    assert event.timestamp.microsecond == 123_456
    assert event.timestamp.utcoffset() == timedelta(0)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800_000_000))
def test_micros_round_trip_through_datetime_exactly(micros):
    assert micros_from_timestamp(timestamp_from_micros(micros)) == micros


def test_micros_from_timestamp_accepts_other_time_zones():
    ts = datetime(2024, 1, 1, 1, 0, 0, 7, tzinfo=timezone(timedelta(hours=1)))
    assert micros_from_timestamp(ts) == micros_from_timestamp(
        datetime(2024, 1, 1, 0, 0, 0, 7, tzinfo=UTC)
    )


def test_naive_timestamp_is_rejected():
    with pytest.raises(ValueError, match="time zone"):
        micros_from_timestamp(datetime(2024, 1, 1))


def test_with_payload_keeps_envelope_and_changes_type_and_data():
    event = _event(metadata_json=EventMetadata(causation_id="c").to_json())
    upcast = event.with_payload("testbank.v1.Other", b"\x01")
    assert (upcast.event_type, upcast.data) == ("testbank.v1.Other", b"\x01")
    assert (upcast.event_id, upcast.position, upcast.version) == ("e-1", 17, 3)
    assert upcast.metadata == event.metadata
    assert (event.event_type, event.data) == ("testbank.v1.MoneyDeposited", b"\x08\x05")


def test_events_compare_by_content():
    assert _event() == _event()
    assert _event() != _event(position=18)
    assert hash(_event()) == hash(_event())


def test_constraint_json_round_trip():
    for c in (UniqueConstraint("i", "v"), UniqueConstraint.release("i", "v")):
        assert UniqueConstraint.from_json(c.to_json()) == c


@pytest.mark.parametrize("command_id", ["cmd-1", 'quote " and \\ backslash', "new\nline é ☃"])
def test_metadata_of_a_command_alone_is_the_same_json_as_the_general_path(command_id):
    metadata = EventMetadata(causation_id=command_id)
    assert metadata.to_json() == json.dumps({"c": command_id}, separators=(",", ":"))
    assert EventMetadata.from_json(metadata.to_json()) == metadata
