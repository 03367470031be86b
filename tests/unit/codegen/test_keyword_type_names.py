"""Messages and enums named like Python keywords (``message None``, ``enum class``): protoc
accepts them, but no Python code can write such a name. The generated module binds every
top-level type by name, so those are refused with the file, line and column; a nested one is
refused when the generated code names it, and left alone otherwise."""

from __future__ import annotations

import pytest

from eventstore.codegen import ModelError, generate_module
from eventstore.codegen.compiler import compile_sources
from eventstore.codegen.plugin import render_files

from .conftest import proto_text

AGGREGATE = "message Acc { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }"
EVENT = "message Added { option (eventsourcing.event).aggregate_name = 'Acc'; }"


def model_error(text: str) -> ModelError:
    with pytest.raises(ModelError) as caught:
        generate_module(text, name="dom")
    return caught.value


@pytest.mark.parametrize("name", ["None", "class", "import", "True"])
def test_top_level_message_named_like_a_keyword_is_an_error_at_the_message(name: str) -> None:
    error = model_error(proto_text(AGGREGATE, EVENT, f"message {name} {{ string x = 1; }}"))
    assert (error.file, error.line, error.column) == ("dom.proto", 6, 1)
    assert f"message t.v1.{name} is named like the Python keyword {name!r}" in error.message
    assert f"from dom_pb2 import {name} is a syntax error" in error.message
    assert error.message.endswith("rename the message")


def test_top_level_enum_named_like_a_keyword_is_an_error_at_the_enum() -> None:
    error = model_error(proto_text(AGGREGATE, EVENT, "enum class { CLASS_UNSPECIFIED = 0; }"))
    assert (error.file, error.line, error.column) == ("dom.proto", 6, 1)
    assert "enum t.v1.class is named like the Python keyword 'class'" in error.message
    assert error.message.endswith("rename the enum")


def test_keyword_message_in_a_file_with_nothing_to_generate_is_an_error_too() -> None:
    # The in-process module binds the messages of every file, so the file generators
    # refuse the name too, even for a file they would write no _es.py for.
    with pytest.raises(ModelError) as caught:
        generate_module(
            {
                "common.proto": 'syntax = "proto3";\npackage c.v1;\nmessage None {}\n',
                "dom.proto": proto_text('import "common.proto";', AGGREGATE),
            },
            name="dom",
        )
    assert (caught.value.file, caught.value.line) == ("common.proto", 3)


def test_aggregate_state_named_like_a_keyword_is_reported_once() -> None:
    with pytest.raises(ModelError) as caught:
        generate_module(
            proto_text(
                "message class { option (eventsourcing.aggregate_root).id_field = 'id'; "
                "string id = 1; }"
            ),
            name="dom",
        )
    assert [(d.line, d.column) for d in caught.value.diagnostics] == [(4, 1)]
    assert "message t.v1.class is named like the Python keyword" in caught.value.message


def test_nested_keyword_message_typing_a_state_field_is_an_error_at_the_nested_message() -> None:
    error = model_error(
        proto_text(
            "message Acc {",
            "  option (eventsourcing.aggregate_root).id_field = 'id';",
            "  string id = 1;",
            "  Outer.None detail = 2;",
            "}",
            "message Outer {",
            "  message None { int32 a = 1; }",
            "}",
        )
    )
    assert (error.file, error.line, error.column) == ("dom.proto", 10, 3)
    assert "message t.v1.Outer.None is named like the Python keyword 'None'" in error.message
    assert "Outer.None is a syntax error" in error.message
    assert error.message.endswith("rename the message")


def test_nested_keyword_event_is_an_error() -> None:
    error = model_error(
        proto_text(
            AGGREGATE,
            "message Outer {",
            "  message class { option (eventsourcing.event).aggregate_name = 'Acc'; }",
            "}",
        )
    )
    assert (error.line, error.column) == (6, 3)
    assert "message t.v1.Outer.class is named like the Python keyword 'class'" in error.message


def test_message_inside_a_keyword_message_used_as_a_request_blames_the_keyword_one() -> None:
    error = model_error(
        proto_text(
            "message Outer {",
            "  message def {",
            "    message Req { string a = 1; }",
            "  }",
            "}",
            "service Things { rpc Go(Outer.def.Req) returns (Outer.def.Req); }",
        )
    )
    assert (error.line, error.column) == (5, 3)
    assert "message t.v1.Outer.def is named like the Python keyword 'def'" in error.message
    assert "names the class of t.v1.Outer.def.Req (Outer.def.Req is a syntax error)" in (
        error.message
    )


def test_file_generator_refuses_a_nested_keyword_message_it_would_name() -> None:
    text = proto_text(
        AGGREGATE,
        "message Outer {",
        "  message class { option (eventsourcing.event).aggregate_name = 'Acc'; }",
        "}",
    )
    files = compile_sources({"dom.proto": text}, ())
    with pytest.raises(ModelError) as caught:
        render_files(["dom.proto"], files.file)
    assert (caught.value.file, caught.value.line, caught.value.column) == ("dom.proto", 6, 3)


def test_nested_keyword_message_nothing_names_is_left_alone() -> None:
    module = generate_module(
        proto_text(AGGREGATE, EVENT, "message Outer { message None { int32 a = 1; } }"),
        name="dom",
    )
    inner = getattr(module.Outer, "None")
    assert inner(a=3).a == 3
