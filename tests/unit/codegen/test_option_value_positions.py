"""Errors about an option's value point at the value, not at the ``option`` statement
(protoc records only the statement's position, so the value is found in the text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore.codegen import ModelError, generate_module

from .conftest import proto_text

STATE = "message Account {"
FIELDS = ("  string account_id = 1;", "}")


def position(text: str) -> tuple[int, int]:
    with pytest.raises(ModelError) as caught:
        generate_module(text, name="dom")
    return caught.value.line, caught.value.column


def test_value_of_a_dotted_option_field() -> None:
    line = '  option (eventsourcing.aggregate_root).id_field = "acount_id";'
    assert position(proto_text(STATE, line, *FIELDS)) == (5, line.index('"acount_id"') + 1)


def test_value_inside_an_option_literal() -> None:
    line = '  option (eventsourcing.aggregate_root) = { id_field: "account_id" type_name: "A-c" };'
    assert position(proto_text(STATE, line, *FIELDS)) == (5, line.index('"A-c"') + 1)


def test_value_on_a_later_line_of_an_option_literal() -> None:
    lines = [
        "  option (eventsourcing.aggregate_root) = {",
        '    type_name: "Acc"',
        "    snapshot_every: -3",
        '    id_field: "account_id"',
        "  };",
    ]
    assert position(proto_text(STATE, *lines, *FIELDS)) == (7, lines[2].index("-3") + 1)


def test_columns_count_a_tab_as_protoc_does() -> None:
    line = '\toption (eventsourcing.aggregate_root) = { id_field: "nope" };'
    assert position(proto_text(STATE, line, *FIELDS)) == (5, 8 + line.index('"nope"'))


def test_event_and_service_option_values() -> None:
    event = "message E { option (eventsourcing.event) = { aggregate_name: 'Nope' }; }"
    service = "service S { option (eventsourcing.service).aggregate_root_message = 'Y';"
    text = proto_text(
        "message A { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
        event,
        "message M {}",
        service,
        "  rpc Go(M) returns (M); }",
    )
    with pytest.raises(ModelError) as caught:
        generate_module(text, name="dom")
    found = [(d.line, d.column) for d in caught.value.diagnostics]
    assert found == [(5, event.index("'Nope'") + 1), (7, service.index("'Y'") + 1)]


def test_value_position_in_a_file_on_disk(tmp_path: Path) -> None:
    line = '  option (eventsourcing.aggregate_root) = { id_field: "acount_id" };'
    (tmp_path / "acc.proto").write_text(proto_text(STATE, line, *FIELDS))
    with pytest.raises(ModelError) as caught:
        generate_module(paths=[tmp_path / "acc.proto"], name="disk")
    error = caught.value
    assert (error.file, error.line, error.column) == (
        str(tmp_path / "acc.proto"),
        5,
        line.index('"acount_id"') + 1,
    )


def test_eventstore_generate_points_at_the_value(tmp_path: Path) -> None:
    from eventstore.cli import generate

    line = '  option (eventsourcing.aggregate_root) = { id_field: "acount_id" };'
    (tmp_path / "acc.proto").write_text(proto_text(STATE, line, *FIELDS))
    with pytest.raises(ModelError) as caught:
        generate(tmp_path, tmp_path / "out")
    assert (caught.value.line, caught.value.column) == (5, line.index('"acount_id"') + 1)
    assert not (tmp_path / "out").exists()


def test_a_commented_out_field_is_not_taken_for_the_value() -> None:
    lines = [
        "  option (eventsourcing.aggregate_root) = {",
        '    // id_field: "nope" is wrong',
        '    type_name: "Acc" /* id_field: "x" */',
        '    id_field: "nope"',
        "  };",
    ]
    assert position(proto_text(STATE, *lines, *FIELDS)) == (8, lines[3].index('"nope"') + 1)


EVENTS = (
    "message Account { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
    "message OpenedEvent { option (eventsourcing.event).aggregate_name = 'Account'; }",
    "message TransferState {",
)


def test_a_repeated_field_points_at_the_entry_at_fault() -> None:
    lines = [
        "  option (eventsourcing.process_manager) = {",
        '    events: "OpenedEvent"',
        '    events: "Nope"',
        "  };",
        "}",
    ]
    assert position(proto_text(*EVENTS, *lines)) == (9, lines[2].index('"Nope"') + 1)


def test_a_list_points_at_the_element_at_fault() -> None:
    lines = [
        '  option (eventsourcing.process_manager) = { events: ["OpenedEvent", // "Nope"',
        '    "Nope"] };',
        "}",
    ]
    assert position(proto_text(*EVENTS, *lines)) == (8, lines[1].index('"Nope"') + 1)


def test_a_repeated_field_set_by_one_statement_per_value_points_at_its_statement() -> None:
    lines = [
        '  option (eventsourcing.process_manager).events = "OpenedEvent";',
        '  option (eventsourcing.process_manager).events = "OpenedEvent";',
        "}",
    ]
    with pytest.raises(ModelError, match="twice") as caught:
        generate_module(proto_text(*EVENTS, *lines), name="dom")
    assert (caught.value.line, caught.value.column) == (8, lines[1].index('"Opened') + 1)
