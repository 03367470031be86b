"""``eventstore copy`` carries what the framework keeps beside the log: a process manager's
state, timeouts and outbox, and the framework's checkpoints and dead letters; a projection
whose read model may sit in the store (tables the copy cannot know) is named and left to
rebuild, never given a checkpoint without its rows. And no password reaches the output or
the destination (the ``eventstore_copy`` mark of an interrupted copy)."""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit, urlunsplit

import pytest

from eventstore import ProjectionManager
from eventstore.cli import main as cli
from eventstore.copy import copy_store
from eventstore.postgres import PostgresEventStore, PostgresReadModel
from eventstore.postgres import ProcessRunner as PostgresProcessRunner
from eventstore.sqlite import ProcessRunner, SQLiteEventStore, SQLiteReadModel
from tests.support import postgres
from tests.support.transfers import (
    AccountOpenedEvent,
    TransferProcess,
    balances,
    bank,
    open_accounts,
    request_transfer,
)

OPENED = AccountOpenedEvent.DESCRIPTOR.full_name
SECRET = "Sup3rS3cret"


class Titles:
    """A read model in the store's own file: one row per account; account 'b' fails."""

    name = "titles"

    def reset(self, ctx):  # type: ignore[no-untyped-def]
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS titles (account TEXT PRIMARY KEY)")

    def handle(self, event, ctx):  # type: ignore[no-untyped-def]
        if event.event_type == OPENED:
            if event.aggregate_id == "b":
                raise ValueError("account b has no title")
            ctx.connection.execute("INSERT INTO titles VALUES (?)", (event.aggregate_id,))


class Audit:
    """A projection under the framework's prefix (process managers set nothing aside today):
    its checkpoint and its dead letter are carried."""

    name = "process:audit"

    def reset(self, ctx):  # type: ignore[no-untyped-def]
        pass

    def handle(self, event, ctx):  # type: ignore[no-untyped-def]
        if event.event_type == OPENED and event.aggregate_id == "b":
            raise ValueError("account b is audited by hand")


def _pg_url(schema: str, password: str | None = None) -> str:
    dsn = postgres.server_dsn()
    if password is not None:
        parts = urlsplit(dsn)
        if parts.password is None:  # the embedded server trusts: any password is taken
            host = parts.netloc.rpartition("@")[2]
            netloc = f"{parts.username or 'postgres'}:{password}@{host}"
            dsn = urlunsplit(parts._replace(netloc=netloc))
    return dsn + ("&" if "?" in dsn else "?") + f"schema={schema}"


def _source(path) -> SQLiteEventStore:  # type: ignore[no-untyped-def]
    """A store whose process manager finished one transfer and holds three undecided: their
    debits in the outbox, their deadlines armed. Two projections set account b aside."""
    store = SQLiteEventStore(path)
    transport, _ = bank(store)
    open_accounts(transport, {"a": 100, "b": 100})
    runner = ProcessRunner(store, TransferProcess(), transport)
    request_transfer(store, "t0", "a", "b", 10)
    runner.drain()
    for i in (1, 2, 3):
        request_transfer(store, f"t{i}", "a", "b", i)
    runner.decide()
    projections = ProjectionManager(store)
    read_model = SQLiteReadModel(store)
    projections.register(Titles(), read_model=read_model, dead_letter=True)
    projections.register(Audit(), read_model=read_model, dead_letter=True)
    projections.catch_up()
    return store


def _processes(runner) -> tuple:  # type: ignore[no-untyped-def]
    """What a process manager's runner sees: states, finished flags, timeouts, outbox."""
    rows = runner.read_model.query("SELECT process_id, finished FROM process_state")
    finished = {process_id: bool(flag) for process_id, flag in rows}
    return (
        {t: runner.state(t) for t in ("t0", "t1", "t2", "t3")},
        finished,
        runner.timeouts(),
        runner.pending_commands(),
    )


def test_a_process_manager_copied_to_postgresql_and_back_goes_on_where_it_stopped(tmp_path, capsys):
    source = _source(tmp_path / "a.db")
    runner = ProcessRunner(source, TransferProcess(), bank(source)[0])
    expected = _processes(runner)
    assert expected[1] == {"t0": True, "t1": False, "t2": False, "t3": False}
    assert len(expected[2]) == 3 and len(expected[3]) == 3
    head = source.head_position()
    assert source.list_checkpoints() == {
        "process:transfers": head,
        "process:audit": head,
        "titles": head,
    }
    letters = SQLiteReadModel(source).dead_letters("process:audit")
    assert len(letters) == 1
    source.close()

    schema = postgres.fresh_schema()
    assert cli(["copy", f"sqlite:///{tmp_path / 'a.db'}", _pg_url(schema)]) == 0
    err = capsys.readouterr().err
    assert "process_state 4" in err and "process_timeouts 3" in err and "process_outbox 3" in err
    assert f"checkpoints not copied: titles (at {head}, 1 dead letter)" in err
    assert "rebuild from the start in the copy" in err
    assert "verified" in err
    with PostgresEventStore(postgres.server_dsn(), schema=schema) as copied:
        pg_runner = PostgresProcessRunner(copied, TransferProcess(), bank(copied)[0])
        assert _processes(pg_runner) == expected
        assert copied.list_checkpoints() == {"process:transfers": head, "process:audit": head}
        with PostgresReadModel(copied) as read_model:
            assert read_model.dead_letters("process:audit") == letters
            assert read_model.dead_letters("titles") == []

    report = copy_store(_pg_url(schema), f"sqlite:///{tmp_path / 'b.db'}")
    assert report.counts["process_outbox"] == 3 and report.skipped_checkpoints == {}
    with SQLiteEventStore(tmp_path / "b.db") as back:
        back_runner = ProcessRunner(back, TransferProcess(), bank(back)[0])
        assert _processes(back_runner) == expected
        assert SQLiteReadModel(back).dead_letters("process:audit") == letters
        # The copied manager goes on: the debits in the outbox are sent, their events
        # decided, and every transfer completes.
        back_runner.drain()
        assert {back_runner.state(f"t{i}")["status"] for i in range(4)} == {"completed"}
        assert balances(bank(back)[1], ["a", "b"]) == {"a": 84, "b": 116}
        # The projection left out rebuilds from the start, its table made anew.
        projections = ProjectionManager(back)
        read_model = SQLiteReadModel(back)
        projections.register(Titles(), read_model=read_model, dead_letter=True)
        projections.catch_up()
        assert read_model.query("SELECT account FROM titles") == [("a",)]
        assert [d.aggregate_id for d in read_model.dead_letters("titles")] == ["b"]


def test_a_store_without_process_tables_copies_them_as_empty(tmp_path):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        transport, _ = bank(source)
        open_accounts(transport, {"a": 1})
    schema = postgres.fresh_schema()
    report = copy_store(str(tmp_path / "a.db"), _pg_url(schema))
    assert report.counts["process_state"] == report.counts["process_outbox"] == 0
    assert report.counts["projection_dead_letters"] == 0
    report = copy_store(_pg_url(schema), str(tmp_path / "b.db"))
    assert report.counts["events"] == 1
    assert report.counts["process_state"] == report.counts["process_timeouts"] == 0


def test_process_tables_of_an_older_release_are_brought_up_to_date_and_copied(tmp_path):
    """Process tables written before their tenant column: migrated, as a runner would."""
    with SQLiteEventStore(tmp_path / "a.db") as source:
        transport, _ = bank(source)
        open_accounts(transport, {"a": 1})
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    conn.execute(
        "CREATE TABLE process_state (manager TEXT NOT NULL, process_id TEXT NOT NULL, "
        "state TEXT NOT NULL, finished INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL, "
        "PRIMARY KEY (manager, process_id)) WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO process_state VALUES ('transfers', 't9', '{\"status\": \"debiting\"}', 0, 1)"
    )
    conn.close()
    schema = postgres.fresh_schema()
    assert copy_store(str(tmp_path / "a.db"), _pg_url(schema)).counts["process_state"] == 1
    with PostgresEventStore(postgres.server_dsn(), schema=schema) as copied:
        runner = PostgresProcessRunner(copied, TransferProcess(), bank(copied)[0])
        assert runner.state("t9") == {"status": "debiting"}


def test_a_password_reaches_neither_the_output_nor_the_mark_of_an_interrupted_copy(
    tmp_path, capsys
):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        transport, _ = bank(source)
        open_accounts(transport, {f"acc-{i}": i for i in range(6)})
    schema = postgres.fresh_schema()
    url = _pg_url(schema, SECRET)
    assert SECRET in url
    assert cli(["copy", str(tmp_path / "a.db"), url]) == 0
    # A second copy into it is refused, naming the destination without the password.
    assert cli(["copy", str(tmp_path / "a.db"), url]) == 1
    err = capsys.readouterr().err
    assert "is not empty" in err and ":***@" in err
    assert SECRET not in err

    # From PostgreSQL (password in the URL) into SQLite, interrupted after the first chunk:
    # the destination's mark names the source without it, and the copy still resumes.
    def interrupt(text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(url, str(tmp_path / "b.db"), progress=interrupt, chunk=2)
    conn = sqlite3.connect(tmp_path / "b.db")
    try:
        marks = conn.execute("SELECT source FROM eventstore_copy").fetchall()
    finally:
        conn.close()
    assert len(marks) == 1 and SECRET not in marks[0][0] and ":***@" in marks[0][0]
    lines: list[str] = []
    report = copy_store(url, str(tmp_path / "b.db"), progress=lines.append, chunk=2)
    assert report.resumed_after == 2 and lines[0] == "resuming after position 2"
    assert report.counts["events"] == 6
    assert not any(SECRET in line for line in lines)


def test_a_source_holding_an_unfinished_copy_is_refused(tmp_path, capsys):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        transport, _ = bank(source)
        open_accounts(transport, {f"acc-{i}": i for i in range(4)})

    def interrupt(text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(str(tmp_path / "a.db"), str(tmp_path / "b.db"), progress=interrupt, chunk=2)
    assert cli(["copy", str(tmp_path / "b.db"), str(tmp_path / "c.db")]) == 1
    err = capsys.readouterr().err
    assert "holds a copy that has not finished" in err and "Finish that copy first" in err
    assert not (tmp_path / "c.db").exists()  # refused before the destination is made
    assert copy_store(str(tmp_path / "a.db"), str(tmp_path / "b.db")).counts["events"] == 4
    assert copy_store(str(tmp_path / "b.db"), str(tmp_path / "c.db")).counts["events"] == 4
