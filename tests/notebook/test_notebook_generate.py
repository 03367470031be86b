"""%%es_generate: proto source in a cell -> live classes in the notebook."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from eventstore.codegen import CodegenError
from eventstore.notebook.magics import MagicError

ROOT = Path(__file__).resolve().parents[2]
BANK_PROTO = (ROOT / "proto" / "examples" / "bank" / "account.proto").read_text()

APPLIER = """
class Applier:
    def apply_account_opened_event(self, agg, e):
        agg.owner = e.owner
        agg.balance = e.initial_deposit
    def apply_money_deposited_event(self, agg, e):
        agg.balance += e.amount
    def apply_money_withdrawn_event(self, agg, e):
        agg.balance -= e.amount
    def apply_account_closed_event(self, agg, e):
        pass
"""

BROKEN = """syntax = "proto3";
package broken.v1;

message Thing {
  string name = 1
  int64 size = 2;
}
"""


def test_es_generate_binds_the_generated_classes_and_the_module(shell):
    shell.run_cell_magic("es_generate", "--name bank", BANK_PROTO)
    ns = shell.user_ns
    assert ns["bank"].__name__ == "eventstore.codegen.live.bank"
    assert ns["AccountOpenedEvent"] is ns["bank"].AccountOpenedEvent
    assert ns["AccountOpenedEvent"].DESCRIPTOR.full_name == "account.v1.AccountOpenedEvent"
    for name in ("AccountAggregate", "AccountRepository", "AccountClient", "AccountStatus"):
        assert name in ns
    assert "annotations" not in ns


def test_es_generate_writes_a_process_manager_the_notebook_subclasses(shell):
    text = BANK_PROTO + (
        "message PayoutState {\n"
        "  option (eventsourcing.process_manager).events = 'MoneyWithdrawnEvent';\n"
        "  int64 paid = 1;\n"
        "}\n"
    )
    with capture_output() as captured:
        shell.run_cell_magic("es_generate", "--name bank", text)
    assert "processes  Payout" in captured.stdout
    shell.run_cell(
        "class Payouts(PayoutProcessManager):\n"
        "    def on_money_withdrawn(self, process, state, event, envelope):\n"
        "        state.paid += event.amount\n"
        "from eventstore.testing import ProcessKit\n"
        "scenario = ProcessKit(Payouts).given(('a', MoneyWithdrawnEvent(amount=7)))\n"
    )
    scenario = shell.user_ns["scenario"]
    assert scenario.processes["a"].state == {"paid": "7"}
    assert shell.user_ns["Payouts"].name == "Payout"


def test_es_generate_prints_a_short_summary(shell):
    with capture_output() as captured:
        shell.run_cell_magic("es_generate", "--name bank", BANK_PROTO)
    out = captured.stdout
    assert out.startswith("generated `bank`:")
    assert "aggregates Account" in out
    assert "events     AccountOpenedEvent, MoneyDepositedEvent" in out
    assert "services   AccountCommandService, AccountQueryService" in out


def test_a_proto_error_fails_the_cell_at_its_cell_line_counting_the_magic_line(shell):
    result = shell.run_cell("%%es_generate --name broken\n" + BROKEN)
    error = result.error_in_exec
    assert isinstance(error, CodegenError)
    assert not isinstance(error, UsageError)
    # The missing ';' is reported at proto line 6 ("int64 size"), which is cell line 7.
    assert str(error).startswith("cell:7:")
    assert (error.file, error.line) == ("cell", 7)


def test_a_proto_error_is_shown_without_a_python_traceback(shell):
    with capture_output() as captured:
        shell.run_cell("%%es_generate --name broken\n" + BROKEN)
    assert "cell:7:" in captured.stdout
    assert "Traceback" not in captured.stdout
    assert "magics.py" not in captured.stdout


def test_a_proto_error_shows_what_to_do_after_the_compiler_messages(shell):
    with capture_output() as captured:
        shell.run_cell("%%es_generate --name broken\n" + BROKEN)
    lines = captured.stdout.strip().splitlines()
    assert lines[-1] == "Fix the proto at the places shown (protoc's messages) and generate again."


def test_a_bad_es_generate_argument_is_reported_as_the_cell_magic(shell):
    result = shell.run_cell("%%es_generate --bogus\n" + BROKEN)
    message = str(result.error_in_exec)
    assert message.startswith("%%es_generate --bogus:")
    assert "See %%es_generate? for its usage." in message


def test_es_generate_named_after_a_python_keyword_fails_saying_it_is_reserved(shell):
    with capture_output() as captured:
        result = shell.run_cell("%%es_generate --name class\n" + BROKEN)
    message = str(result.error_in_exec)
    assert isinstance(result.error_in_exec, MagicError)
    assert "'class' is a reserved word in Python" in message
    assert "--name class_" in message
    assert "Traceback" not in captured.stdout


def test_running_a_changed_cell_replaces_the_earlier_classes(shell):
    first = 'syntax = "proto3";\npackage v.v1;\nmessage A { string x = 1; }\nmessage Gone {}\n'
    second = 'syntax = "proto3";\npackage v.v1;\nmessage A { string x = 1; int64 y = 2; }\n'
    shell.run_cell_magic("es_generate", "--name v", first)
    old = shell.user_ns["A"]
    shell.run_cell_magic("es_generate", "--name v", second)
    new = shell.user_ns["A"]
    assert new is not old
    assert [f.name for f in new.DESCRIPTOR.fields] == ["x", "y"]
    assert "Gone" not in shell.user_ns


def test_generated_events_decode_in_es_events_without_a_repository(shell, cell):
    cell("%es_store")
    shell.run_cell_magic("es_generate", "--name bank", BANK_PROTO)
    cell(APPLIER)
    cell(
        "r = AccountRepository(store, Applier())\n"
        "a = r.factory('acc-1')\n"
        "a.apply_change(AccountOpenedEvent(owner='Ada', initial_deposit=70))\n"
        "r.save(a)\n"
        "del r"
    )
    frame = cell("%es_events")
    assert frame.loc[0, "payload"] == {"owner": "Ada", "initial_deposit": 70}


def test_es_state_shows_a_generated_aggregate_through_its_repository(shell, cell):
    cell("%es_store")
    shell.run_cell_magic("es_generate", "--name bank", BANK_PROTO)
    cell(APPLIER)
    cell(
        "repo = AccountRepository(store, Applier())\n"
        "a = repo.factory('acc-1')\n"
        "a.apply_change(AccountOpenedEvent(owner='Ada', initial_deposit=70))\n"
        "a.apply_change(MoneyDepositedEvent(amount=5))\n"
        "repo.save(a)"
    )
    frame = cell("%es_state acc-1 --repo repo --at 1")
    state = dict(zip(frame["field"], frame["value"], strict=True))
    assert state["balance"] == 70
    assert state["status"] == "ACCOUNT_STATUS_UNSPECIFIED"


def test_es_generate_of_the_bank_proto_takes_well_under_a_second(shell):
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        with capture_output():
            shell.run_cell_magic("es_generate", "--name bank", BANK_PROTO)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.5, timings


def test_generating_under_another_name_says_which_names_it_replaced(shell):
    shell.run_cell_magic(
        "es_generate",
        "--name first",
        'syntax = "proto3";\npackage p1;\nmessage A {}\nmessage B {}\n',
    )
    shell.run_cell("C = 'mine'")
    with capture_output() as captured:
        shell.run_cell_magic(
            "es_generate",
            "--name second",
            'syntax = "proto3";\npackage p2;\nmessage A {}\nmessage C {}\n',
        )
    assert captured.stdout.strip().splitlines()[-1] == (
        "replaced names already in the notebook: A (from %%es_generate --name first); "
        "C (defined in the notebook)"
    )


def test_rerunning_the_same_name_reports_no_replacement(shell):
    source = 'syntax = "proto3";\npackage p1;\nmessage A {}\n'
    shell.run_cell_magic("es_generate", "--name first", source)
    with capture_output() as captured:
        shell.run_cell_magic("es_generate", "--name first", source)
    assert "replaced" not in captured.stdout


def test_a_cell_without_a_syntax_line_gets_a_hint_under_protocs_message(shell):
    with capture_output() as captured:
        shell.run_cell(
            "%%es_generate --name nosyntax\npackage n.v1;\nmessage A { string x = 1; }\n"
        )
    lines = captured.stdout.strip().splitlines()
    assert lines[1].startswith("cell:3:")  # protoc's own message comes first
    assert lines[2].startswith('hint: the cell has no `syntax = "proto3";` line')


def test_a_cell_using_options_without_their_import_gets_a_hint(shell):
    source = (
        'syntax = "proto3";\npackage n.v1;\n'
        'message Account {\n  option (eventsourcing.aggregate_root) = { id_field: "id" };\n'
        "  string id = 1;\n}\n"
    )
    result = shell.run_cell("%%es_generate --name noimport\n" + source)
    message = str(result.error_in_exec)
    assert 'add `import "eventsourcing/options.proto";` below the package line' in message
    assert message.splitlines()[0].startswith("cell:5:")


# -- the "replaced names" line across names and reloads --------------------------------------
AB = 'syntax = "proto3";\npackage p1;\nmessage A {}\nmessage B {}\n'
AC = 'syntax = "proto3";\npackage p1;\nmessage A { string x = 1; }\nmessage C {}\n'


def generate(shell, line: str, source: str) -> list[str]:
    """Run ``%%es_generate LINE`` on ``source``; the lines it printed."""
    with capture_output() as captured:
        shell.run_cell_magic("es_generate", line, source)
    return captured.stdout.strip().splitlines()


def test_generating_back_under_the_first_name_names_what_the_other_name_had_bound(shell):
    generate(shell, "--name bank", AB)
    generate(shell, "--name bank2", AB)
    lines = generate(shell, "--name bank", AB)
    assert (
        lines[-1]
        == "replaced names already in the notebook: A, B (from %%es_generate --name bank2)"
    )


def test_a_changed_proto_back_under_the_first_name_names_only_what_it_rebinds(shell):
    generate(shell, "--name bank", AB)
    generate(shell, "--name bank2", AB)
    lines = generate(shell, "--name bank", AC)
    assert (
        lines[-1] == "replaced names already in the notebook: A (from %%es_generate --name bank2)"
    )
    assert shell.user_ns["B"] is shell.user_ns["bank2"].B  # bank2's B is not bank's to remove


def test_rerunning_a_name_names_a_generated_name_the_notebook_has_since_rebound(shell):
    generate(shell, "--name bank", AB)
    shell.run_cell("B = 'mine'")
    lines = generate(shell, "--name bank", AB)
    assert lines[-1] == "replaced names already in the notebook: B (defined in the notebook)"


def test_rerunning_a_name_after_reload_ext_reports_no_replacement(shell):
    generate(shell, "--name bank", AB)
    shell.run_line_magic("reload_ext", "eventstore.notebook")
    lines = generate(shell, "--name bank", AB)
    assert not any("replaced" in line for line in lines), lines


def test_generating_another_name_after_reload_ext_names_the_earlier_runs_names(shell):
    generate(shell, "--name bank", AB)
    shell.run_line_magic("reload_ext", "eventstore.notebook")
    shell.run_cell("C = 'mine'")
    lines = generate(shell, "--name bank2", AC)
    assert lines[-1] == (
        "replaced names already in the notebook: A (from %%es_generate --name bank); "
        "C (defined in the notebook)"
    )


def test_after_reload_ext_a_variable_over_a_generated_name_is_reported_as_the_notebooks(shell):
    generate(shell, "--name bank", AB)
    shell.run_line_magic("reload_ext", "eventstore.notebook")
    shell.run_cell("A = 'mine'")
    lines = generate(shell, "--name bank", AB)
    assert lines[-1] == "replaced names already in the notebook: A (defined in the notebook)"


def test_after_reload_ext_a_changed_cell_still_removes_the_classes_it_no_longer_has(shell):
    generate(shell, "--name bank", AB)
    shell.run_line_magic("reload_ext", "eventstore.notebook")
    generate(shell, "--name bank", AC)
    assert "B" not in shell.user_ns
    assert shell.user_ns["C"] is shell.user_ns["bank"].C


def test_after_reload_ext_classes_generate_module_made_in_code_count_as_the_notebooks(shell):
    from eventstore.codegen import generate_module

    generate(shell, "--name bank", AB)
    shell.run_line_magic("reload_ext", "eventstore.notebook")
    # Code, not the magic, generates under the same name: its B is the notebook's own.
    shell.user_ns["B"] = generate_module(AB, name="bank").B
    lines = generate(shell, "--name bank2", AB)
    assert lines[-1] == (
        "replaced names already in the notebook: A (from %%es_generate --name bank); "
        "B (defined in the notebook)"
    )
