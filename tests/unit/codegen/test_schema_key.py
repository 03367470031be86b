"""The snapshot schema key follows the state's shape, not the options written on it."""

from __future__ import annotations

from eventstore.codegen import generate_module

from .conftest import proto_text


def key_of(root_option: str, *fields: str) -> str:
    module = generate_module(
        proto_text(
            f"message Box {{ option (eventsourcing.aggregate_root) = {{ {root_option} }};",
            "  string id = 1;",
            "  Inner inner = 2;",
            *fields,
            "}",
            "message Inner { int64 n = 1; }",
        ),
        name="keys",
    )
    key: str = module.__es_model__.aggregates[0].schema_key
    return key


BASE = "id_field: 'id'"


def test_changing_snapshot_every_keeps_the_schema_key() -> None:
    assert key_of(BASE) == key_of(BASE + " snapshot_every: 50")


def test_changing_type_name_keeps_the_schema_key() -> None:
    assert key_of(BASE) == key_of(BASE + " type_name: 'Crate'")


def test_adding_a_field_changes_the_schema_key() -> None:
    assert key_of(BASE) != key_of(BASE, "  int64 count = 3;")


def test_changing_a_field_type_changes_the_schema_key() -> None:
    assert key_of(BASE, "  int64 count = 3;") != key_of(BASE, "  int32 count = 3;")


def test_renumbering_a_field_changes_the_schema_key() -> None:
    assert key_of(BASE, "  int64 count = 3;") != key_of(BASE, "  int64 count = 4;")


def test_changing_a_message_the_state_holds_changes_the_schema_key() -> None:
    plain = generate_module(
        proto_text(
            "message Box { option (eventsourcing.aggregate_root).id_field = 'id';",
            "  string id = 1; Inner inner = 2; }",
            "message Inner { int64 n = 1; }",
        ),
        name="keys",
    )
    grown = generate_module(
        proto_text(
            "message Box { option (eventsourcing.aggregate_root).id_field = 'id';",
            "  string id = 1; Inner inner = 2; }",
            "message Inner { int64 n = 1; string note = 2; }",
        ),
        name="keys",
    )
    assert (
        plain.__es_model__.aggregates[0].schema_key != grown.__es_model__.aggregates[0].schema_key
    )
