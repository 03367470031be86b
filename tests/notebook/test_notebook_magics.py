"""The magics, run through a real IPython InteractiveShell."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from eventstore import SQLiteEventStore
from eventstore.notebook.magics import MagicError
from tests.support.bank import Account, pb

ROOT = Path(__file__).resolve().parents[2]

BANK_SETUP = """
from tests.support.bank import Account, account_repository
repo = account_repository(store)
a = Account("acc-1"); a.open("Ada", 100); a.deposit(50); repo.save(a)
b = Account("acc-2"); b.open("Bob", 10); repo.save(b)
a.withdraw(30); repo.save(a)
"""


def test_es_store_opens_an_in_memory_store_bound_to_the_named_variable(shell, cell):
    cell("%es_store --var events")
    store = shell.user_ns["events"]
    assert isinstance(store, SQLiteEventStore)
    assert store.path == ":memory:"
    assert not store.closed


def test_es_store_with_a_path_opens_that_sqlite_file(shell, cell, tmp_path):
    path = tmp_path / "nb.db"
    cell(f"%es_store {path}")
    assert shell.user_ns["store"].path == str(path)
    assert path.exists()


def test_es_store_prints_the_file_name_without_its_folder(shell, tmp_path):
    with capture_output() as captured:
        shell.run_cell(f"%es_store {tmp_path / 'nb.db'}")
    expected = "event store in file nb.db is open as `store` (log head at position 0)\n"
    assert captured.stdout == expected
    assert shell.user_ns["es_session"].store_path == str(tmp_path / "nb.db")


def test_es_store_again_closes_the_store_opened_before(shell, cell, tmp_path):
    cell(f"%es_store {tmp_path / 'one.db'}")
    first = shell.user_ns["store"]
    cell(f"%es_store {tmp_path / 'two.db'}")
    assert first.closed
    assert not shell.user_ns["store"].closed


def test_es_store_in_a_missing_folder_fails_the_cell_naming_the_folder(shell, tmp_path):
    result = shell.run_cell(f"%es_store {tmp_path / 'nope' / 'x.db'}")
    assert isinstance(result.error_in_exec, MagicError)
    assert "does not exist" in str(result.error_in_exec)
    assert str(tmp_path / "nope") in str(result.error_in_exec)


def test_es_store_opens_a_store_url(shell, tmp_path):
    with capture_output() as captured:
        shell.run_cell(f"%es_store sqlite:///{tmp_path / 'url.db'}?synchronous=NORMAL")
    assert captured.stdout.startswith("event store in file url.db is open as `store`")
    assert shell.user_ns["store"].synchronous == "NORMAL"
    assert (tmp_path / "url.db").exists()


def test_es_store_with_a_memory_url_says_in_memory(shell):
    with capture_output() as captured:
        shell.run_cell("%es_store sqlite://")
    assert captured.stdout.startswith("event store in memory is open as `store`")


def test_es_store_opens_a_read_only_file_uri_naming_the_file(shell, tmp_path):
    SQLiteEventStore(tmp_path / "ro.db").close()
    with capture_output() as captured:
        shell.run_cell(f"%es_store file:{tmp_path / 'ro.db'}?mode=ro")
    assert captured.stdout.startswith("event store in file ro.db is open as `store`")


def test_es_store_on_a_server_that_is_not_there_fails_the_cell_without_the_password(shell):
    result = shell.run_cell("%es_store postgresql://ann:s3cret@127.0.0.1:1/bank?connect_timeout=2")
    assert isinstance(result.error_in_exec, MagicError)
    assert "cannot connect" in str(result.error_in_exec)
    assert "s3cret" not in str(result.error_in_exec)


def test_es_store_on_another_applications_database_fails_the_cell(shell, tmp_path):
    import sqlite3

    raw = sqlite3.connect(tmp_path / "other.db")
    raw.execute("CREATE TABLE customers (id INTEGER)")
    raw.close()
    result = shell.run_cell(f"%es_store {tmp_path / 'other.db'}")
    assert isinstance(result.error_in_exec, MagicError)
    assert "another application" in str(result.error_in_exec)


def test_es_events_shows_every_event_with_payloads_decoded_through_a_repository(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    frame = cell("%es_events")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["position"]) == [1, 2, 3, 4]
    assert frame["decoded"].all()
    assert frame.loc[0, "payload"] == {"owner": "Ada", "initial_balance": 100}
    assert frame.loc[3, "payload"] == {"amount": 30}


def test_es_events_filters_by_aggregate(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    frame = cell("%es_events acc-2")
    assert list(frame["aggregate_id"]) == ["acc-2"]


def test_es_events_filters_by_short_or_full_event_type(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    short = cell("%es_events --type AccountOpened")
    full = cell("%es_events --type testbank.v1.AccountOpened")
    assert list(short["aggregate_id"]) == ["acc-1", "acc-2"]
    assert list(full["position"]) == list(short["position"])


def test_es_events_of_an_unknown_type_fails_listing_the_types_in_the_store(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    result = shell.run_cell("%es_events --type Nope")
    error = result.error_in_exec
    assert isinstance(error, MagicError)
    assert "%es_events --type Nope: no event type of that name" in str(error)
    assert "testbank.v1.AccountOpened, testbank.v1.MoneyDeposited" in str(error)


def test_es_events_of_a_known_type_with_no_events_yet_is_an_empty_table(shell, cell):
    cell("%es_store")
    cell("from tests.support.bank import EVENT_TYPES\nes_session.register(*EVENT_TYPES)")
    frame = cell("%es_events --type MoneyDeposited")
    assert frame.empty


def test_es_events_last_n_keeps_the_newest(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    frame = cell("%es_events --last 2")
    assert list(frame["position"]) == [3, 4]


def test_es_events_shows_raw_hex_when_no_message_class_is_known(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP + "\ndel repo")
    frame = cell("%es_events --last 1")
    assert not frame.loc[0, "decoded"]
    assert frame.loc[0, "payload"] == pb.MoneyWithdrawn(amount=30).SerializeToString().hex()


def test_es_events_decodes_classes_registered_with_the_session(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP + "\ndel repo")
    cell("from tests.support.bank import EVENT_TYPES\nes_session.register(*EVENT_TYPES)")
    frame = cell("%es_events --last 1")
    assert frame.loc[0, "payload"] == {"amount": 30}


def test_es_events_without_a_store_fails_the_cell_and_says_to_run_es_store(shell):
    result = shell.run_cell("%es_events")
    assert isinstance(result.error_in_exec, MagicError)
    assert "%es_store" in str(result.error_in_exec)


def test_bad_magic_arguments_fail_the_cell_instead_of_only_printing(shell, cell):
    cell("%es_store")
    result = shell.run_cell("%es_events --last many")
    assert isinstance(result.error_in_exec, MagicError)
    assert "--last" in str(result.error_in_exec)


def test_magic_errors_show_their_message_without_a_python_traceback(shell):
    with capture_output() as captured:
        shell.run_cell("%es_events")
    assert "MagicError: %es_events needs an event store" in captured.stdout
    assert "Traceback" not in captured.stdout
    assert "magics.py" not in captured.stdout


def test_es_state_shows_the_state_at_the_latest_version(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    with capture_output() as captured:
        frame = cell("%es_state acc-1 --repo repo")
    state = dict(zip(frame["field"], frame["value"], strict=True))
    assert state["balance"] == 120
    assert state["owner"] == "Ada"
    assert "Account 'acc-1' at version 3 of 3" in captured.stdout


def test_es_state_at_a_version_shows_the_state_then(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    frame = cell("%es_state acc-1 --repo repo --at 2")
    state = dict(zip(frame["field"], frame["value"], strict=True))
    assert state["balance"] == 150
    assert state["history"] == ["AccountOpened", "MoneyDeposited"]


def test_es_state_beyond_the_last_version_fails_naming_the_range(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    result = shell.run_cell("%es_state acc-1 --repo repo --at 9")
    assert isinstance(result.error_in_exec, MagicError)
    assert "from 1 to 3" in str(result.error_in_exec)


def test_es_state_with_an_unknown_repo_variable_fails_naming_it(shell, cell):
    cell("%es_store")
    result = shell.run_cell("%es_state acc-1 --repo nothing_here")
    assert isinstance(result.error_in_exec, MagicError)
    assert "'nothing_here'" in str(result.error_in_exec)


def test_es_state_with_a_non_repository_variable_fails_saying_what_it_is(shell, cell):
    cell("%es_store\nx = 5")
    result = shell.run_cell("%es_state acc-1 --repo x")
    assert isinstance(result.error_in_exec, MagicError)
    assert "is a int, not a Repository" in str(result.error_in_exec)


def test_unloading_the_extension_closes_the_store(shell, cell):
    cell("%es_store")
    store = shell.user_ns["store"]
    shell.run_line_magic("unload_ext", "eventstore.notebook")
    assert store.closed
    shell.run_line_magic("load_ext", "eventstore.notebook")  # for the fixture's teardown


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_store_is_closed_when_the_kernel_process_exits(tmp_path):
    # atexit runs last-registered first: the reporter registered before the
    # extension loads runs after the session's close.
    done = _run_python(
        f"""
        import atexit
        holder = {{}}
        atexit.register(lambda: print("closed at exit:", holder["store"].closed))
        from IPython.core.history import HistoryAccessor
        HistoryAccessor.enabled = False
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "eventstore.notebook")
        ip.run_line_magic("es_store", {str(tmp_path / "k.db")!r})
        holder["store"] = ip.user_ns["store"]
        print("open before exit:", not holder["store"].closed)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "open before exit: True" in done.stdout
    assert "closed at exit: True" in done.stdout


def test_importing_eventstore_imports_none_of_the_notebook_libraries(tmp_path):
    done = _run_python(
        """
        import sys
        import eventstore
        eventstore.SQLiteEventStore(":memory:").close()
        heavy = ("IPython", "ipywidgets", "pandas", "altair", "eventstore.notebook")
        print("loaded:", [m for m in heavy if m in sys.modules])
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


def test_session_is_reachable_as_es_session_in_the_namespace(shell: InteractiveShell, cell):
    cell("%es_store")
    assert shell.user_ns["es_session"].store is shell.user_ns["store"]


@pytest.fixture(autouse=True)
def _account_class_is_importable() -> None:
    # The cells import tests.support.bank; make sure it is the same module here.
    assert Account.aggregate_type == "Account"


def test_a_dataset_loaded_in_the_notebook_decodes_in_es_events_without_registering(shell, cell):
    cell("%es_store")
    cell("import eventstore.datasets")
    cell('store, bank, summary = eventstore.datasets.load("bank", store)')
    frame = cell("%es_events --last 1")
    assert bool(frame.loc[0, "decoded"])
    assert isinstance(frame.loc[0, "payload"], dict)


def test_unloading_the_extension_stops_registering_loaded_datasets(shell, cell):
    import eventstore.datasets
    from eventstore.datasets import loader

    session = shell._eventstore_session
    assert len(loader._load_listeners) == 1
    shell.run_line_magic("unload_ext", "eventstore.notebook")
    assert loader._load_listeners == []
    eventstore.datasets.load("bank")
    assert len(session.message_types) == 0
    shell.run_line_magic("load_ext", "eventstore.notebook")


def test_es_events_brief_shows_a_narrow_table(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    frame = cell("%es_events --brief")
    assert list(frame.columns) == ["position", "aggregate_id", "version", "event_type", "payload"]
    assert list(frame["position"]) == [1, 2, 3, 4]


def test_es_events_with_an_unknown_column_fails_naming_the_columns(shell, cell):
    cell("%es_store")
    result = shell.run_cell("%es_events --columns position,nope")
    assert isinstance(result.error_in_exec, MagicError)
    assert "no column 'nope'" in str(result.error_in_exec)


def test_es_store_opens_a_postgresql_url(shell):
    from tests.support import postgres

    dsn = postgres.server_dsn()
    schema = postgres.fresh_schema()
    with capture_output() as captured:
        shell.run_cell(f"%es_store {dsn}?schema={schema}")
    assert captured.stdout.startswith("event store on PostgreSQL at postgresql://")
    assert f"(schema {schema})" in captured.stdout
    shell.user_ns["store"].close()


# -- quoting: every magic splits its line as a shell would ------------------------------------
SPACED_SETUP = """
from tests.support.bank import Account, account_repository
repo = account_repository(store)
for name in ("m 1", "-x", "m"):
    a = Account(name); a.open(name, 10); repo.save(a)
"""


def test_es_events_of_a_quoted_id_with_a_space_shows_its_events(shell, cell):
    cell("%es_store")
    cell(SPACED_SETUP)
    single = cell("%es_events 'm 1'")
    double = cell('%es_events "m 1"')
    assert list(single["aggregate_id"]) == ["m 1"]
    assert list(double["aggregate_id"]) == ["m 1"]


def test_es_state_of_a_quoted_id_with_a_space_shows_that_aggregate(shell, cell):
    cell("%es_store")
    cell(SPACED_SETUP)
    with capture_output() as captured:
        frame = cell("%es_state 'm 1' --repo repo")
    assert "Account 'm 1' at version 1 of 1" in captured.stdout
    assert dict(zip(frame["field"], frame["value"], strict=True))["owner"] == "m 1"


def test_es_state_takes_an_id_starting_with_a_dash_after_a_double_dash(shell, cell):
    cell("%es_store")
    cell(SPACED_SETUP)
    frame = cell("%es_state --repo repo -- -x")
    assert dict(zip(frame["field"], frame["value"], strict=True))["owner"] == "-x"


def test_an_unquoted_id_with_a_space_fails_saying_to_quote_it(shell, cell):
    cell("%es_store")
    cell(SPACED_SETUP)
    result = shell.run_cell("%es_state m 1 --repo repo")
    assert isinstance(result.error_in_exec, MagicError)
    assert "unrecognized arguments: 1" in str(result.error_in_exec)
    assert "Quote a value that has spaces" in str(result.error_in_exec)


def test_an_unclosed_quote_fails_the_cell_saying_to_close_it(shell, cell):
    cell("%es_store")
    result = shell.run_cell("%es_events 'm 1")
    assert isinstance(result.error_in_exec, MagicError)
    assert "No closing quotation" in str(result.error_in_exec)


def test_es_store_with_a_quoted_path_with_a_space_opens_that_file(shell, cell, tmp_path):
    cell(f"%es_store '{tmp_path / 'my lib.db'}'")
    assert shell.user_ns["store"].path == str(tmp_path / "my lib.db")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["my lib.db"]


def test_es_store_of_a_relative_sqlite_url_keeps_the_full_path_in_the_session(
    shell, cell, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cell("%es_store sqlite:///lib2.db")
    assert shell.user_ns["es_session"].store_path == str(tmp_path / "lib2.db")


# -- %es_state: the framework's errors as one line ----------------------------------------------
def test_es_state_through_a_repository_on_a_store_es_store_closed_says_to_rebuild_it(
    shell, cell, tmp_path
):
    cell(f"%es_store {tmp_path / 'a.db'}")
    cell(BANK_SETUP)
    cell(f"%es_store {tmp_path / 'b.db'}")
    with capture_output() as captured:
        result = shell.run_cell("%es_state acc-1 --repo repo")
    error = result.error_in_exec
    assert isinstance(error, MagicError)
    assert "which %es_store closed when it opened another" in str(error)
    assert "Make the repository again on the open store (`repo = Repository(store, ...)`)" in str(
        error
    )
    assert str(tmp_path / "a.db") in str(error)
    assert "Traceback" not in captured.stdout


def test_es_state_through_a_repository_of_another_aggregate_type_names_both_types(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    cell(
        "from eventstore import NewEvent, new_event_id\n"
        'store.append("bk-1", "Book", 0, [NewEvent(new_event_id(), "library.v1.BookAdded", b"")])'
    )
    with capture_output() as captured:
        result = shell.run_cell("%es_state bk-1 --repo repo")
    error = result.error_in_exec
    assert isinstance(error, MagicError)
    assert "events of 'bk-1' are of aggregate type 'Book'" in str(error)
    assert "`repo` loads 'Account'" in str(error)
    assert "Traceback" not in captured.stdout


def test_es_state_through_a_repository_on_a_store_closed_in_code_says_to_open_one(shell, cell):
    cell("%es_store")
    cell(BANK_SETUP)
    cell("store.close()")
    result = shell.run_cell("%es_state acc-1 --repo repo")
    assert isinstance(result.error_in_exec, MagicError)
    assert "which is closed. Open a store (%es_store)" in str(result.error_in_exec)


def test_es_state_of_a_tenant_isolated_repository_counts_the_tenants_stream(shell, cell):
    # The store keeps the tenant's events under <tenant>::<id>: the line used to say "of 0".
    cell("%es_store")
    cell(
        "from eventstore.core.tenancy import with_tenant\n"
        "from tests.support.bank import Account, account_repository\n"
        "repo = account_repository(store, tenant_isolation=True)\n"
        "with with_tenant('acme'):\n"
        "    a = Account('acc-1'); a.open('Ada', 100); a.deposit(5); repo.save(a)\n"
    )
    with capture_output() as captured:
        frame = cell("with with_tenant('acme'):\n    f = %es_state acc-1 --repo repo\nf")
    assert dict(zip(frame["field"], frame["value"], strict=True))["balance"] == 105
    assert "Account 'acc-1' at version 2 of 2" in captured.stdout
