"""Compiling proto text and files with grpcio-tools in this process."""

from __future__ import annotations

import pytest

from eventstore.codegen import ProtoCompileError, generate_module
from eventstore.codegen.compiler import compile_sources, parse_diagnostics

from .conftest import proto_text


def test_syntax_error_names_the_file_line_and_column() -> None:
    text = proto_text("message A {", "  strin name = 1;", "}")
    with pytest.raises(ProtoCompileError) as caught:
        generate_module(text, name="acct")
    error = caught.value
    assert (error.file, error.line, error.column) == ("acct.proto", 5, 3)
    assert "strin" in error.message
    assert str(error).startswith('acct.proto:5:3: "strin" is not defined.')


def test_every_protoc_error_is_kept_as_a_diagnostic() -> None:
    text = proto_text("message A { strin x = 1; }", "message B { intt y = 1; }")
    with pytest.raises(ProtoCompileError) as caught:
        generate_module(text, name="two")
    lines = sorted(d.line for d in caught.value.diagnostics)
    assert lines == [4, 5]


def test_missing_import_is_reported_against_the_importing_line() -> None:
    text = proto_text('import "nowhere/missing.proto";')
    with pytest.raises(ProtoCompileError) as caught:
        generate_module(text, name="imp")
    where = {(d.file, d.line) for d in caught.value.diagnostics}
    assert ("imp.proto", 4) in where
    assert any(d.file == "nowhere/missing.proto" for d in caught.value.diagnostics)


def test_missing_import_error_points_first_at_the_importing_line() -> None:
    text = proto_text("message A {}", 'import "nowhere/missing.proto";')
    with pytest.raises(ProtoCompileError) as caught:
        generate_module(text, name="imp")
    error = caught.value
    assert (error.file, error.line, error.column) == ("imp.proto", 5, 1)
    assert error.message == 'Import "nowhere/missing.proto" was not found or had errors.'
    # The missing file is still reported, right after the import that names it.
    second = error.diagnostics[1]
    assert (second.file, second.line, second.message) == (
        "nowhere/missing.proto",
        0,
        "File not found.",
    )


def test_compiling_writes_nothing_to_the_process_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ProtoCompileError):
        generate_module(proto_text("message A { strin x = 1; }"), name="quiet")
    generate_module("message NoSyntaxLine {}\n", name="nosyntax")
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_descriptor_set_has_imports_first_and_source_positions() -> None:
    files = compile_sources({"a.proto": proto_text("message A { string x = 1; }")})
    names = [f.name for f in files.file]
    assert names[-1] == "a.proto"
    assert "eventsourcing/options.proto" in names
    assert names.index("google/protobuf/descriptor.proto") < names.index(
        "eventsourcing/options.proto"
    )
    assert files.file[-1].source_code_info.location


def test_absl_log_noise_and_warnings_are_not_diagnostics() -> None:
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "a.proto:3:1: warning: Import b.proto is unused.\n"
        'a.proto:7:5: Expected ";".\n'
    )
    found = parse_diagnostics(text)
    assert [(d.file, d.line, d.column) for d in found] == [("a.proto", 7, 5)]
