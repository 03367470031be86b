"""Names a generated module needs for itself: a message cannot take them, and a clash of
generated names points at the message to rename."""

from __future__ import annotations

import pytest

from eventstore.codegen import ModelError, generate_module

from .conftest import proto_text

AGGREGATE = "message Acc { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }"


def model_error(text: str) -> ModelError:
    with pytest.raises(ModelError) as caught:
        generate_module(text, name="dom")
    return caught.value


@pytest.mark.parametrize("name", ["_t", "_es", "_abc", "frozenset", "property", "_pb_x"])
def test_message_named_like_a_name_the_module_uses_is_an_error_at_the_message(name: str) -> None:
    error = model_error(
        proto_text(
            AGGREGATE,
            "message Added { option (eventsourcing.event).aggregate_name = 'Acc'; }",
            f"message {name} {{ int64 n = 1; }}",
        )
    )
    assert (error.file, error.line, error.column) == ("dom.proto", 6, 1)
    assert f"message t.v1.{name}" in error.message
    assert "rename the message" in error.message


def test_registry_of_an_aggregate_and_an_event_constant_clash_at_the_event() -> None:
    error = model_error(
        proto_text(
            AGGREGATE,
            "message AccEvents {",
            "  option (eventsourcing.event).aggregate_name = 'Acc';",
            "}",
        )
    )
    assert (error.file, error.line, error.column) == ("dom.proto", 5, 1)
    assert "ACC_EVENTS" in error.message
    assert "rename the message AccEvents" in error.message


def test_module_registry_and_an_event_constant_clash_at_the_event() -> None:
    error = model_error(
        proto_text(
            AGGREGATE,
            "",
            "message EventTypes { option (eventsourcing.event).aggregate_name = 'Acc'; }",
        )
    )
    assert (error.file, error.line, error.column) == ("dom.proto", 6, 1)
    assert "EVENT_TYPES" in error.message
    assert "rename the message EventTypes" in error.message


def test_enum_named_like_a_name_the_module_uses_is_an_error_at_the_enum() -> None:
    error = model_error(proto_text(AGGREGATE, "enum _abc { X = 0; }"))
    assert (error.file, error.line, error.column) == ("dom.proto", 5, 1)
    assert "enum t.v1._abc" in error.message
