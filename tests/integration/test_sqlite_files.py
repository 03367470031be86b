"""Files that are not ours, and failures about a file: errors that name it, the cause and the fix.

Real files in every case: another application's database, one from a newer
version, a text file, a truncated file, a read-only file and folder, a full
database (SQLite's ``max_page_count``, which fails exactly as a full disk does).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventstore import (
    CorruptDatabaseError,
    EventStoreError,
    ForeignDatabaseError,
    IntegerRangeError,
    NewEvent,
    NotADatabaseError,
    PayloadTooLargeError,
    ReadOnlyStoreError,
    SchemaVersionError,
    StorageError,
    StorageFullError,
    new_event_id,
)
from eventstore.sqlite import SQLiteEventStore, SQLiteReadModel
from eventstore.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION


def _event(data: bytes = b"x") -> NewEvent:
    return NewEvent(new_event_id(), "Deposited", data)


def _raw(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in statements:
        conn.execute(statement)
    conn.close()


def _header(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    found = (
        conn.execute("PRAGMA application_id").fetchone()[0],
        conn.execute("PRAGMA user_version").fetchone()[0],
    )
    conn.close()
    return found


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    return names


# -- our mark ---------------------------------------------------------------------------------
def test_a_new_store_file_is_marked_with_eventstores_application_id(db_path):
    SQLiteEventStore(db_path).close()
    assert _header(db_path) == (APPLICATION_ID, SCHEMA_VERSION)


@pytest.mark.parametrize("user_version", [0, 1, 2, 7])
def test_another_applications_database_is_refused_and_left_unchanged(db_path, user_version):
    _raw(db_path, "CREATE TABLE customers (id INTEGER)", f"PRAGMA user_version = {user_version}")
    with pytest.raises(ForeignDatabaseError) as caught:
        SQLiteEventStore(db_path)
    message = str(caught.value)
    assert str(db_path) in message and "customers" in message
    assert f"user_version {user_version}" in message and "a file of its own" in message
    assert caught.value.path == str(db_path)
    assert _tables(db_path) == {"customers"}
    assert _header(db_path) == (0, user_version)


def test_a_database_marked_by_another_application_is_refused(db_path):
    _raw(db_path, "PRAGMA application_id = 1234")
    with pytest.raises(ForeignDatabaseError, match="application_id 0x4d2"):
        SQLiteEventStore(db_path)


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_file_of_an_earlier_version_opens_and_gets_marked(db_path, version):
    statements = [s for m in MIGRATIONS[:version] for s in m.split(";") if s.strip()]
    _raw(db_path, *statements, f"PRAGMA user_version = {version}")
    with SQLiteEventStore(db_path) as store:
        store.append("acc-1", "Account", 0, [_event()])
        assert store.stream_version("acc-1") == 1
    assert _header(db_path) == (APPLICATION_ID, SCHEMA_VERSION)


def test_a_file_from_a_newer_version_is_refused_with_both_versions(db_path):
    SQLiteEventStore(db_path).close()
    _raw(db_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError) as caught:
        SQLiteEventStore(db_path)
    assert (caught.value.found, caught.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert str(db_path) in str(caught.value) and "Upgrade eventstore" in str(caught.value)


def test_a_read_model_refuses_a_newer_file_and_writes_nothing(db_path):
    SQLiteEventStore(db_path).close()
    _raw(db_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = _tables(db_path)
    with pytest.raises(SchemaVersionError):
        SQLiteReadModel(db_path)
    assert _tables(db_path) == before


def test_a_read_model_refuses_another_applications_database(db_path):
    _raw(db_path, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(ForeignDatabaseError):
        SQLiteReadModel(db_path)
    assert _tables(db_path) == {"customers"}


def test_a_read_model_file_is_marked_and_opens_again(tmp_path):
    path = tmp_path / "views.db"
    SQLiteReadModel(path).close()
    assert _header(path) == (APPLICATION_ID, 0)
    SQLiteReadModel(path).close()


def test_a_read_model_file_of_an_earlier_version_opens_and_gets_marked(tmp_path):
    path = tmp_path / "views.db"
    _raw(
        path,
        "CREATE TABLE projection_checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL, "
        "updated_at INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE TABLE balances (id TEXT)",
    )
    SQLiteReadModel(path).close()
    assert _header(path) == (APPLICATION_ID, 0)


def test_a_read_model_shares_the_store_file_by_path(db_path):
    with SQLiteEventStore(db_path) as store:
        store.append("acc-1", "Account", 0, [_event()])
    with SQLiteReadModel(db_path) as model:
        assert model.load_checkpoint("p") == 0


def test_a_store_refuses_a_read_models_own_file(tmp_path):
    path = tmp_path / "views.db"
    SQLiteReadModel(path).close()
    with pytest.raises(ForeignDatabaseError, match="read model"):
        SQLiteEventStore(path)


# -- files that are not databases or are damaged ------------------------------------------------
def test_a_file_that_is_not_a_database_is_named_in_the_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n" * 200)
    with pytest.raises(NotADatabaseError) as caught:
        SQLiteEventStore(path)
    assert str(path) in str(caught.value) and "not a SQLite database" in str(caught.value)


def _store_with_events(path: Path) -> None:
    with SQLiteEventStore(path, synchronous="OFF") as store:
        store.append("acc-1", "Account", 0, [_event(os.urandom(500)) for _ in range(2000)])
    _raw(path, "PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_truncated_file_is_refused_with_a_corruption_error_naming_it(db_path):
    _store_with_events(db_path)
    os.truncate(db_path, db_path.stat().st_size // 2)
    with pytest.raises(CorruptDatabaseError) as caught, SQLiteEventStore(db_path) as store:
        store.read_all()
    assert str(db_path) in str(caught.value) and "backup" in str(caught.value)


def test_verify_refuses_a_file_damaged_inside_on_open(db_path):
    _store_with_events(db_path)
    with db_path.open("r+b") as file:  # overwrite pages in the middle; the header stays sound
        file.seek(db_path.stat().st_size // 2)
        file.write(b"\xff" * 16384)
    SQLiteEventStore(db_path).close()  # opens: nothing reads those pages yet
    with pytest.raises(CorruptDatabaseError, match="damaged") as caught:
        SQLiteEventStore(db_path, verify=True)
    assert str(db_path) in str(caught.value)


def test_verify_opens_a_sound_file(db_path):
    _store_with_events(db_path)
    with SQLiteEventStore(db_path, verify=True) as store:
        assert store.head_position() == 2000


# -- read-only files and folders ---------------------------------------------------------------
def test_a_store_opened_read_only_by_uri_reads_and_refuses_writes(db_path):
    with SQLiteEventStore(db_path) as store:
        store.append("acc-1", "Account", 0, [_event()])
    with SQLiteEventStore(f"file:{db_path}?mode=ro") as store:
        assert store.stream_version("acc-1") == 1
        with pytest.raises(ReadOnlyStoreError) as caught:
            store.append("acc-1", "Account", 1, [_event()])
    assert "read-only" in str(caught.value) and str(db_path) in str(caught.value)


def _unprivileged(action: Callable[[], str]) -> str:
    """Run ``action`` where file permissions apply: as this user, or as nobody when root.

    Root ignores permissions, so as root a forked child drops to uid 65534 first.
    """
    if os.geteuid() != 0:
        return action()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's cleanup
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            result = action()
        except BaseException as exc:  # reported to the parent, which fails the test
            result = f"unexpected {type(exc).__name__}: {exc}"
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = pipe.read()
    os.waitpid(pid, 0)
    return result


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the unprivileged child can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="eventstore-ro-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        shutil.rmtree(folder)


def _error_of(call: Callable[[], object]) -> Callable[[], str]:
    def action() -> str:
        try:
            call()
        except EventStoreError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "no error"

    return action


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_read_only_file_refuses_writes_naming_the_file(shared_dir):
    path = shared_dir / "events.db"
    SQLiteEventStore(path).close()
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

    def append() -> None:
        with SQLiteEventStore(path) as store:
            store.append("acc-1", "Account", 0, [_event()])

    reported = _unprivileged(_error_of(append))
    assert reported.startswith("ReadOnlyStoreError:"), reported
    assert str(path) in reported and "file is read-only" in reported


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_read_only_folder_is_named_as_the_cause(shared_dir):
    folder = shared_dir / "data"
    folder.mkdir()
    folder.chmod(0o777)
    path = folder / "events.db"
    SQLiteEventStore(path).close()
    path.chmod(0o666)
    folder.chmod(0o555)
    reported = _unprivileged(_error_of(lambda: SQLiteEventStore(path).close()))
    assert reported.startswith("ReadOnlyStoreError:"), reported
    assert f"folder {str(folder)!r} is read-only" in reported


# -- full disk, oversized payloads, integers beyond SQLite's -------------------------------------
def test_a_full_database_fails_the_append_cleanly_and_works_again_after_space_is_freed(db_path):
    with SQLiteEventStore(db_path) as store:
        store.append("acc-1", "Account", 0, [_event()])
        writer = store._db.writer  # the size limit is per connection: set it on the writer
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StorageFullError) as caught:
            store.append("acc-1", "Account", 1, [_event(os.urandom(4096)) for _ in range(8)])
        assert str(db_path) in str(caught.value) and "Free space" in str(caught.value)
        assert store.stream_version("acc-1") == 1  # nothing of it was stored
        writer.execute("PRAGMA max_page_count = 1073741823")  # space freed
        store.append("acc-1", "Account", 1, [_event(os.urandom(4096)) for _ in range(8)])
        assert store.stream_version("acc-1") == 9


def test_a_payload_over_sqlites_limit_is_refused_naming_the_aggregate_and_sizes(db_path):
    with SQLiteEventStore(db_path) as store:
        # SQLite's limit is 1e9 bytes by default; lower it rather than allocate a gigabyte.
        store._db.writer.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
        with pytest.raises(PayloadTooLargeError) as caught:
            store.append("acc-1", "Account", 0, [_event(b"x" * 20_000)])
        error = caught.value
        assert (error.aggregate_id, error.size, error.limit) == ("acc-1", 20_000, 10_000)
        assert "20,000 bytes" in str(error) and str(db_path) in str(error)
        assert store.stream_version("acc-1") == 0


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("after_position", lambda store: store.read_all(2**63)),
        ("after_version", lambda store: store.load_stream("acc-1", after_version=2**63)),
        ("expected_version", lambda store: store.append("acc-1", "A", 2**63, [_event()])),
        ("position", lambda store: store.save_checkpoint("p", 2**63)),
        ("scanned_position", lambda store: store.save_checkpoint("p", 1, scanned_position=2**63)),
    ],
)
def test_positions_and_versions_beyond_sqlites_integers_are_refused_by_name(db_path, name, call):
    with SQLiteEventStore(db_path) as store:
        with pytest.raises(IntegerRangeError) as caught:
            call(store)
        assert caught.value.name == name
        assert "2**63" in str(caught.value) and str(db_path) in str(caught.value)
        assert isinstance(caught.value, ValueError)


def test_a_version_bound_beyond_sqlites_integers_reads_the_whole_stream(db_path):
    with SQLiteEventStore(db_path) as store:
        store.append("acc-1", "Account", 0, [_event()])
        assert len(store.load_stream("acc-1", up_to_version=2**64)) == 1
        assert store.latest_snapshot("acc-1", 2**64) is None


def test_a_path_naming_a_folder_is_refused_naming_it(tmp_path):
    folder = tmp_path / "looks-like.db"
    folder.mkdir()
    with pytest.raises(StorageError, match="cannot open the file") as caught:
        SQLiteEventStore(folder)
    assert str(folder) in str(caught.value)
