"""A store file of an older schema opened read-only: it cannot be migrated (that writes),
and the error says so, with the way out, instead of "open it read-only and only read"."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from eventstore import ReadOnlyStoreError, SQLiteEventStore
from eventstore.core.errors import SchemaMigrationNeededError, SchemaVersionError
from eventstore.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION


def _older_store_file(path: Path, version: int, *, marked: bool = True) -> None:
    """A store file as an eventstore of schema ``version`` left it, with one event."""
    conn = sqlite3.connect(path)
    for migration in MIGRATIONS[:version]:
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version = {version}")
    if marked:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
        "timestamp, data) VALUES ('e1', 'acc-1', 'Account', 'bank.v1.Opened', 1, 0, x'')"
    )
    conn.commit()
    conn.close()


def _header(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("PRAGMA application_id").fetchone()[0],
            conn.execute("PRAGMA user_version").fetchone()[0],
        )
    finally:
        conn.close()


@pytest.mark.parametrize(("version", "marked"), [(SCHEMA_VERSION - 1, True), (2, False)])
def test_an_older_schema_opened_read_only_says_it_needs_migrating_and_is_left_unchanged(
    tmp_path: Path, version: int, marked: bool
) -> None:
    path = tmp_path / "older.db"
    _older_store_file(path, version, marked=marked)
    before = _header(path)
    location = f"file:{path}?mode=ro"
    with pytest.raises(SchemaMigrationNeededError) as caught:
        SQLiteEventStore(location)
    error = caught.value
    assert (error.found, error.supported, error.path) == (version, SCHEMA_VERSION, location)
    # Caught by what callers catch for either cause.
    assert isinstance(error, SchemaVersionError) and isinstance(error, ReadOnlyStoreError)
    message = str(error)
    assert f"schema version {version}" in message and f"migrating it to {SCHEMA_VERSION}" in message
    assert "writable copy" in message
    assert "open it read-only and only read" not in message
    assert _header(path) == before


def test_a_writable_copy_of_the_older_file_opens_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    _older_store_file(path, SCHEMA_VERSION - 1)
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    with SQLiteEventStore(copy) as store:
        assert [e.event_id for e in store.load_stream("acc-1")] == ["e1"]
    assert _header(copy) == (APPLICATION_ID, SCHEMA_VERSION)
    assert _header(path)[1] == SCHEMA_VERSION - 1


def test_a_current_schema_file_still_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "current.db"
    with SQLiteEventStore(path) as store:
        store.save_checkpoint("p", 0)
    with SQLiteEventStore(f"file:{path}?mode=ro") as store:
        assert store.load_checkpoint("p") == 0


def test_an_empty_file_opened_read_only_is_a_plain_read_only_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(ReadOnlyStoreError) as caught:
        SQLiteEventStore(f"file:{path}?mode=ro")
    assert not isinstance(caught.value, SchemaMigrationNeededError)
