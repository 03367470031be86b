"""``eventstore copy``: SQLite to PostgreSQL and back, refusing, resuming and verifying."""

from __future__ import annotations

from datetime import timedelta

import pytest

from eventstore import NewEvent, Snapshot, StreamAppend, UniqueConstraint, new_event_id
from eventstore.cli import main as cli
from eventstore.copy import CopyError, copy_store
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore
from tests.support import postgres


def _fill(store, accounts: int = 5, per: int = 7) -> None:
    for a in range(accounts):
        events = [NewEvent(new_event_id(), "Deposited", bytes([a, d])) for d in range(per)]
        events[0] = NewEvent(
            new_event_id(), "Opened", b"\x00\xff", constraints=[UniqueConstraint("owner", f"o{a}")]
        )
        store.append(
            f"acc-{a}", "Account", 0, events, command_id=f"open-{a}", command_ttl=timedelta(days=1)
        )
    store.append_many(  # a unit: its record names both aggregates
        [
            StreamAppend("pair-a", "Account", 0, [NewEvent(new_event_id(), "Opened", b"")]),
            StreamAppend("pair-b", "Account", 0, [NewEvent(new_event_id(), "Opened", b"")]),
        ],
        command_id="unit-1",
    )
    store.save_snapshot(Snapshot("acc-1", "Account", 3, "k1", b"state"))
    # The framework's own checkpoints, which the copy carries (a projection's own is named
    # and left out: tests/integration/test_copy_probe2_framework_tables.py).
    store.save_checkpoint("process:balances", 12, scanned_position=20)
    store.save_checkpoint("relay:events", 30)


def _state(store) -> tuple:
    return (
        [
            (e.position, e.event_id, e.version, e.data, e.metadata_json, e.timestamp_micros)
            for e in store.read_all()
        ],
        store.constraint_owner("owner", "o3"),
        store.processed_command("open-2"),
        [e.event_id for e in store.find_command("unit-1", "pair-b").events],
        store.list_snapshots("acc-1"),
        (
            store.load_checkpoint("process:balances"),
            store.load_scanned_position("process:balances"),
            store.load_checkpoint("relay:events"),
        ),
    )


def _pg_url(schema: str) -> str:
    dsn = postgres.server_dsn()
    return dsn + ("&" if "?" in dsn else "?") + f"schema={schema}"


def test_a_store_copied_to_postgresql_and_back_is_the_same_store(tmp_path, capsys):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        _fill(source)
        source.append("acc-0", "Account", 7, [NewEvent(new_event_id(), "Closed", b"")])
        expected = _state(source)
    schema = postgres.fresh_schema()
    assert cli(["copy", f"sqlite:///{tmp_path / 'a.db'}", _pg_url(schema)]) == 0
    assert "verified" in capsys.readouterr().err
    with PostgresEventStore(postgres.server_dsn(), schema=schema) as copied:
        assert _state(copied) == expected
        nxt = copied.append("new", "Account", 0, [NewEvent(new_event_id(), "Opened", b"")])
        assert nxt.events[0].position == expected[0][-1][0] + 1, "the sequence follows the copy"
    report = copy_store(_pg_url(schema), str(tmp_path / "b.db"))
    assert report.counts["events"] == len(expected[0]) + 1
    with SQLiteEventStore(tmp_path / "b.db") as back:
        assert _state(back)[1:] == expected[1:]
        assert _state(back)[0][:-1] == expected[0]  # and the event appended on PostgreSQL


def test_a_destination_that_is_not_empty_is_refused(tmp_path, capsys):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        _fill(source, 1, 1)
    with SQLiteEventStore(tmp_path / "b.db") as other:
        other.save_checkpoint("x", 1)
    with pytest.raises(CopyError, match="not empty.*projection_checkpoints"):
        copy_store(str(tmp_path / "a.db"), str(tmp_path / "b.db"))
    assert cli(["copy", str(tmp_path / "a.db"), str(tmp_path / "b.db")]) == 1
    assert "not empty" in capsys.readouterr().err


def test_an_interrupted_copy_resumes_after_its_last_chunk(tmp_path):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        _fill(source, 10, 10)
        expected = _state(source)
    schema = postgres.fresh_schema()
    seen: list[str] = []

    def interrupt(text: str) -> None:
        seen.append(text)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(str(tmp_path / "a.db"), _pg_url(schema), progress=interrupt, chunk=20)
    with PostgresEventStore(postgres.server_dsn(), schema=schema, during_copy=True) as partial:
        assert partial.count_events() == 60
    lines: list[str] = []
    report = copy_store(str(tmp_path / "a.db"), _pg_url(schema), progress=lines.append, chunk=20)
    assert report.resumed_after == 60
    assert lines[0] == "resuming after position 60"
    with PostgresEventStore(postgres.server_dsn(), schema=schema) as copied:
        assert _state(copied) == expected


def test_a_missing_source_is_refused_and_not_created(tmp_path, capsys):
    source, destination = tmp_path / "typo.db", tmp_path / "new.db"
    assert cli(["copy", f"sqlite:///{source}", f"sqlite:///{destination}"]) == 1
    assert f"the source 'sqlite:///{source}' does not exist" in capsys.readouterr().err
    assert not source.exists()
    assert not destination.exists()


def test_an_empty_source_file_is_refused_and_left_empty(tmp_path, capsys):
    (tmp_path / "empty.db").write_bytes(b"")
    assert cli(["copy", str(tmp_path / "empty.db"), str(tmp_path / "new.db")]) == 1
    assert "is not an event store (it has no events table" in capsys.readouterr().err
    assert (tmp_path / "empty.db").read_bytes() == b""


def test_a_sqlite_url_with_one_slash_is_named_as_a_typo(tmp_path, capsys):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        _fill(source, 1, 1)
    assert cli(["copy", "sqlite:/a.db", f"sqlite:///{tmp_path / 'b.db'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eventstore copy: cannot open event store 'sqlite:/a.db'")
    assert "Write sqlite:///relative.db or sqlite:////absolute/path.db" in err
    assert len(err.splitlines()) == 1


def test_a_destination_in_a_missing_folder_is_named_in_one_line(tmp_path, capsys):
    with SQLiteEventStore(tmp_path / "a.db") as source:
        _fill(source, 1, 1)
    destination = f"sqlite:///{tmp_path / 'nodir' / 'b.db'}"
    assert cli(["copy", f"sqlite:///{tmp_path / 'a.db'}", destination]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eventstore copy: cannot open event store")
    assert "does not exist" in err
    assert len(err.splitlines()) == 1


def test_a_source_of_an_older_schema_version_is_still_copied(tmp_path):
    """A file from before the mark (user_version 2) is migrated, as opening it would."""
    import sqlite3

    from eventstore.sqlite.schema import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for statement in ";".join(MIGRATIONS[:2]).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
        "timestamp, data) VALUES ('e1', 'acc-1', 'Account', 'Opened', 1, 0, x'00')"
    )
    conn.close()
    report = copy_store(str(tmp_path / "old.db"), str(tmp_path / "new.db"))
    assert report.counts["events"] == 1
    with SQLiteEventStore(tmp_path / "new.db") as copied:
        assert [e.event_id for e in copied.read_all()] == ["e1"]


def test_a_postgresql_source_without_a_store_is_refused_and_left_without_one(tmp_path):
    import psycopg

    schema = postgres.fresh_schema()
    with pytest.raises(CopyError, match=f"schema '{schema}' has no events table"):
        copy_store(_pg_url(schema), str(tmp_path / "new.db"))
    with psycopg.connect(postgres.server_dsn()) as conn:
        created = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchall()
    assert created == []
    assert not (tmp_path / "new.db").exists()


def test_a_nul_byte_postgresql_cannot_hold_is_named_in_one_line(tmp_path, capsys):
    # SQLite stores it; psycopg refused it with a bare DataError naming no row.
    with SQLiteEventStore(tmp_path / "a.db") as source:
        _fill(source, accounts=1, per=2)
        source.append("bad\x00id", "Account", 0, [NewEvent(new_event_id(), "Opened", b"")])
    schema = postgres.fresh_schema()
    assert cli(["copy", f"sqlite:///{tmp_path / 'a.db'}", _pg_url(schema)]) != 0
    err = capsys.readouterr().err
    assert "NUL byte" in err and "aggregate_id" in err and "'bad\\x00id'" in err
    assert "Traceback" not in err
