"""Every inconsistency in the options is an error naming the file, line and element."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore.codegen import CodegenError, ModelError, generate_module

from .conftest import proto_text


def model_error(text: str, name: str = "dom") -> ModelError:
    with pytest.raises(ModelError) as caught:
        generate_module(text, name=name)
    return caught.value


def test_unknown_id_field_names_the_option_line_and_the_fields() -> None:
    error = model_error(
        proto_text(
            "message Account {",
            '  option (eventsourcing.aggregate_root).id_field = "acount_id";',
            "  string account_id = 1;",
            "  int64 balance = 2;",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 5)
    assert "id_field 'acount_id'" in error.message
    assert "fields: account_id, balance" in error.message
    assert error.element == "t.v1.Account"


def test_id_field_that_is_not_a_string_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message Account {",
            '  option (eventsourcing.aggregate_root).id_field = "number";',
            "  int64 number = 1;",
            "}",
        )
    )
    assert error.line == 5
    assert "not a single string field" in error.message


def test_event_naming_a_missing_aggregate_is_reported_at_its_option() -> None:
    error = model_error(
        proto_text(
            "message Account {",
            "  option (eventsourcing.aggregate_root).type_name = 'Account';",
            "  string id = 1;",
            "}",
            "message Opened {",
            '  option (eventsourcing.event).aggregate_name = "Acount";',
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 9)
    assert "aggregate_name 'Acount'" in error.message
    assert "aggregates: Account" in error.message
    assert error.element == "t.v1.Opened"


def test_event_without_an_aggregate_name_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message Opened {",
            "  option (eventsourcing.event) = {};",
            "}",
        )
    )
    assert error.line == 5
    assert "has no aggregate_name" in error.message


def test_service_bound_to_a_missing_aggregate_is_reported_at_its_option() -> None:
    error = model_error(
        proto_text(
            "message PingMsg {}",
            "service PingService {",
            '  option (eventsourcing.service).aggregate_name = "Pinger";',
            "  rpc Ping(PingMsg) returns (PingMsg);",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 6)
    assert "aggregate_name 'Pinger'" in error.message
    assert error.element == "t.v1.PingService"


def test_service_naming_a_missing_state_message_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message PingMsg {}",
            "service PingService {",
            '  option (eventsourcing.service).aggregate_root_message = "t.v1.Nope";',
            "  rpc Ping(PingMsg) returns (PingMsg);",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 6)
    assert error.element == "t.v1.PingService"
    assert "aggregate_root_message 't.v1.Nope'" in error.message


def test_service_options_naming_two_different_aggregates_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message A { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
            "message B { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
            "message PingMsg {}",
            "service PingService {",
            "  option (eventsourcing.service) = {",
            '    aggregate_name: "A" aggregate_root_message: "B"',
            "  };",
            "  rpc Ping(PingMsg) returns (PingMsg);",
            "}",
        )
    )
    assert error.line == 8
    assert "'A' by aggregate_name but 'B' by aggregate_root_message" in error.message


def test_two_aggregates_with_one_type_name_name_both_places() -> None:
    error = model_error(
        proto_text(
            "message AccountV1 {",
            '  option (eventsourcing.aggregate_root).type_name = "Account";',
            "  string id = 1;",
            "}",
            "message AccountV2 {",
            '  option (eventsourcing.aggregate_root).type_name = "Account";',
            "  string id = 1;",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 8)
    assert "declared twice" in error.message
    assert "dom.proto:4" in error.message


def test_type_name_that_is_not_an_identifier_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message Account {",
            '  option (eventsourcing.aggregate_root).type_name = "bank account";',
            "}",
        )
    )
    assert error.line == 5
    assert "not an identifier" in error.message


def test_a_message_cannot_be_both_state_and_event() -> None:
    error = model_error(
        proto_text(
            "message Account {",
            '  option (eventsourcing.aggregate_root).type_name = "Account";',
            '  option (eventsourcing.event).aggregate_name = "Account";',
            "}",
        )
    )
    assert error.line == 6
    assert "also an aggregate's state" in error.message


def test_negative_snapshot_interval_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message Account {",
            "  option (eventsourcing.aggregate_root).snapshot_every = -5;",
            "}",
        )
    )
    assert error.line == 5
    assert "snapshot_every -5" in error.message


def test_streaming_method_is_reported_at_the_method() -> None:
    error = model_error(
        proto_text(
            "message PingMsg {}",
            "service PingService {",
            "  rpc Ping(stream PingMsg) returns (PingMsg);",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 6)
    assert error.element == "t.v1.PingService.Ping"
    assert "streams" in error.message


def test_server_streaming_method_of_well_known_types_is_reported_at_the_method() -> None:
    error = model_error(
        proto_text(
            'import "google/protobuf/empty.proto";',
            "service PingService {",
            "  rpc Ping(google.protobuf.Empty) returns (stream google.protobuf.Empty);",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 6)
    assert error.element == "t.v1.PingService.Ping"
    assert "streams" in error.message


def test_rpc_named_like_a_python_keyword_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message PingMsg {}",
            "service PingService {",
            "  rpc Import(PingMsg) returns (PingMsg);",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 6)
    assert error.element == "t.v1.PingService.Import"
    assert "Python method 'import'" in error.message


def test_rpc_named_like_the_clients_transport_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message PingMsg {}",
            "service PingService {",
            "  rpc Transport(PingMsg) returns (PingMsg);",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 6)
    assert "Python method 'transport'" in error.message


def test_aggregate_type_that_becomes_a_keyword_sdk_attribute_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message Class {",
            "  option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1;",
            "}",
            "message Enrol {}",
            "service ClassCommandService {",
            "  rpc EnrolStudent(Enrol) returns (Enrol);",
            "}",
        )
    )
    assert (error.file, error.line) == ("dom.proto", 8)
    assert error.element == "t.v1.ClassCommandService"
    assert "SDK attribute 'class'" in error.message


def test_two_services_of_one_aggregate_with_one_method_name_clash_in_the_client() -> None:
    error = model_error(
        proto_text(
            "message A { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
            "message PingMsg {}",
            "service ACommandService { rpc Ping(PingMsg) returns (PingMsg); }",
            "service AQueryService {",
            "  rpc Ping(PingMsg) returns (PingMsg);",
            "}",
        )
    )
    assert error.line == 8
    assert "both become AClient.ping" in error.message


def test_message_named_like_a_generated_class_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message Account { option (eventsourcing.aggregate_root).id_field = 'id';"
            " string id = 1; }",
            "message AccountRepository {}",
        )
    )
    assert error.line == 5
    assert "named like the generated AccountRepository" in error.message


def test_all_errors_are_reported_together_in_file_order() -> None:
    error = model_error(
        proto_text(
            "message A { option (eventsourcing.aggregate_root).id_field = 'nope'; }",
            "message E { option (eventsourcing.event).aggregate_name = 'Missing'; }",
        )
    )
    assert [d.line for d in error.diagnostics] == [4, 5]


def test_errors_in_files_on_disk_name_the_path_given(tmp_path: Path) -> None:
    path = tmp_path / "bad.proto"
    path.write_text(
        proto_text("message E {", "  option (eventsourcing.event).aggregate_name = 'Missing';", "}")
    )
    with pytest.raises(CodegenError) as caught:
        generate_module(paths=[path], name="disk")
    assert (caught.value.file, caught.value.line) == (str(path), 5)


def test_event_in_another_file_naming_a_missing_aggregate_names_that_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "model.proto").write_text(
        proto_text(
            "message Account { option (eventsourcing.aggregate_root).id_field = 'id';"
            " string id = 1; }"
        )
    )
    (tmp_path / "events.proto").write_text(
        proto_text(
            'import "model.proto";',
            "message Opened {",
            "  option (eventsourcing.event).aggregate_name = 'Acount';",
            "}",
        )
    )
    with pytest.raises(ModelError) as caught:
        generate_module(paths=[tmp_path / "model.proto", tmp_path / "events.proto"], name="split")
    assert caught.value.file == str(tmp_path / "events.proto")
    assert caught.value.line == 6


def test_error_lines_can_be_moved_to_a_cell() -> None:
    error = model_error(
        proto_text("message E { option (eventsourcing.event).aggregate_name = 'X'; }"),
        name="cell",
    )
    moved = error.shifted("cell.proto", -3, new_file="<cell>")
    assert (moved.file, moved.line) == ("<cell>", 1)
    assert isinstance(moved, ModelError)
    assert moved._render_traceback_()[1].startswith("<cell>:1:")
