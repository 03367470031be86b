"""The words and layout of generated code: advice that runs, English, and ``ruff format``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventstore.codegen import generate_module
from eventstore.codegen.build import build_model
from eventstore.codegen.compiler import compile_files, compile_sources
from eventstore.codegen.render import render_file, render_live

from .conftest import EXAMPLES, ROOT

TRICKY = """\
syntax = "proto3";
package tricky.v1;
import "eventsourcing/options.proto";

// "A ledger" whose comment is long enough to be wrapped by the generator, as it goes on and on.
//
//\tA line indented by a tab, kept as it is even though it is long enough to be wrapped by anyone.
//   Another indented line.
// https://example.com/a-very-long-url-that-cannot-be-broken-anywhere-because-it-has-no-spaces-at-all
message Ledger {
  option (eventsourcing.aggregate_root) = { id_field: "id" snapshot_every: 10 };
  string id = 1;
  int64 class = 2;
  int64 total = 3;
}

message Added {
  option (eventsourcing.event).aggregate_name = "Ledger";
  int64 amount = 1;
}

// Ends with a quote and an escaped quote: \\"like this\\" and \"""
//
// Three quotes \"\"\" inside, a backslash \\\\ and "a quote at the end"
message Removed { option (eventsourcing.event).aggregate_name = "Ledger"; }

// Back to "zero"
message Zeroed { option (eventsourcing.event).aggregate_name = "Ledger"; }

message AddCommand { string id = 1; int64 amount = 2; }
message AddReply { int64 total = 1; }
message GetLedgerQuery { string id = 1; }
message LedgerView { int64 total = 1; }

// Commands of the ledger, with a comment long enough to be wrapped into several lines by the gen.
service LedgerCommandService {
  //    Adds an amount; a comment long enough to need wrapping at the method's deeper indentation.
  //  Its second line is indented less than its first.
  rpc Add(AddCommand) returns (AddReply);
}

service LedgerQueryService {
  // https://example.com/another-very-long-url-that-cannot-be-broken-anywhere-because-it-has-no
  rpc GetLedger(GetLedgerQuery) returns (LedgerView);
}
"""


class LedgerApplier:
    def apply_added(self, agg, event):  # type: ignore[no-untyped-def]
        pass

    def apply_removed(self, agg, event):  # type: ignore[no-untyped-def]
        pass

    def apply_zeroed(self, agg, event):  # type: ignore[no-untyped-def]
        pass


def tricky_file_source() -> str:
    model = build_model(compile_sources({"tricky/tricky.proto": TRICKY}).file)
    rendered = render_file(model, "tricky/tricky.proto")
    assert rendered is not None
    return rendered.source


def test_advice_for_a_keyword_state_field_is_python_that_reaches_it() -> None:
    module = generate_module(TRICKY, name="tricky")
    (warning,) = [w for w in module.__es_model__.warnings if "'class'" in w.message]
    advice = warning.message.rsplit("reach it as ", 1)[1]
    assert advice == 'getattr(agg.state, "class")'
    agg = module.new_ledger("l-1", LedgerApplier())
    agg.state.total = 0
    setattr(agg.state, "class", 7)
    assert eval(advice, {"agg": agg}) == 7
    assert '``getattr(state, "class")``' in module.__es_source__


def test_applier_docstrings_use_the_right_article() -> None:
    source = generate_module(TRICKY, name="tricky").__es_source__
    assert "Apply an Added to ``agg``." in source
    assert "Apply a Removed" not in source  # Removed has a comment of its own


def test_query_handler_docstring_does_not_ask_for_a_command_id() -> None:
    source = generate_module(TRICKY, name="tricky").__es_source__
    query = source.split("class LedgerQueryServiceHandler", 1)[1].split("class ", 1)[0]
    command = source.split("class LedgerCommandServiceHandler", 1)[1].split("class ", 1)[0]
    assert "command_id" not in query
    assert "ctx.command_id" in command


def ruff_format_check(name: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "ruff", "format", "--config", str(ROOT / "pyproject.toml")),
            *("--diff", "--stdin-filename", name, "-"),
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("mode", ["file", "live"])
def test_generated_code_for_a_tricky_proto_is_what_ruff_format_writes(mode: str) -> None:
    if mode == "file":
        text = tricky_file_source()
    else:
        text = generate_module(TRICKY, name="tricky").__es_source__
    result = ruff_format_check("tricky_es.py", text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_for_the_bank_example_is_what_ruff_format_writes() -> None:
    model = build_model(compile_files(["bank/account.proto"], [EXAMPLES]).file)
    sources = [render_file(model, "bank/account.proto"), render_live(model, "bank.proto")]
    for rendered in sources:
        assert rendered is not None
        result = ruff_format_check("account_es.py", rendered.source)
        assert result.returncode == 0, result.stdout + result.stderr


def test_checked_in_example_is_what_ruff_format_writes() -> None:
    path = ROOT / "examples" / "bankaccount" / "generated" / "account_es.py"
    result = ruff_format_check("account_es.py", Path(path).read_text(encoding="utf-8"))
    assert result.returncode == 0, result.stdout + result.stderr
