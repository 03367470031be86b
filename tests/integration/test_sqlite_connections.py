"""SQLite specifics: pragmas on every connection, files, reopening, closing, schema."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from eventstore import NewEvent, StorageError, new_event_id
from eventstore.sqlite import ConnectionSettings, SQLiteEventStore, StoreClosedError
from eventstore.sqlite.schema import SCHEMA_VERSION
from tests.support.bank import Account, account_repository


def _read_from_threads(store: SQLiteEventStore, count: int) -> list[ConnectionSettings]:
    """Read from ``count`` threads; returns the store's settings while they are all alive."""
    read, done = threading.Barrier(count + 1), threading.Event()

    def work() -> None:
        store.read_all()
        store.load_stream("acc-1")
        read.wait(timeout=10)
        done.wait(timeout=10)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for t in threads:
        t.start()
    read.wait(timeout=10)
    settings = store.connection_settings()
    done.set()
    for t in threads:
        t.join(timeout=30)
    return settings


@pytest.mark.parametrize("level", ["FULL", "NORMAL"])
def test_every_connection_of_a_file_store_has_wal_the_level_and_a_busy_timeout(db_path, level):
    with SQLiteEventStore(db_path, synchronous=level, busy_timeout=7.5) as store:
        store.append("acc-1", "Account", 0, [])
        settings = _read_from_threads(store, 4)
        assert len(settings) == 5, "a writer and one reader per thread"
        assert {s.role for s in settings} == {"writer", "reader"}
        for s in settings:
            assert s.journal_mode == "WAL"
            assert s.synchronous == level
            assert s.busy_timeout_ms == 7500


def test_every_connection_checkpoints_the_wal_at_the_pages_asked_for(db_path):
    with SQLiteEventStore(db_path, checkpoint_pages=2_500) as store:
        store.append("acc-1", "Account", 0, [])
        settings = _read_from_threads(store, 2)
        assert len(settings) == 3
        assert {s.checkpoint_pages for s in settings} == {2_500}


def test_default_checkpoint_interval_is_ten_thousand_pages(db_path):
    with SQLiteEventStore(db_path) as store:
        assert {s.checkpoint_pages for s in store.connection_settings()} == {10_000}


def test_a_checkpoint_interval_below_one_page_is_refused(db_path):
    with pytest.raises(ValueError, match="checkpoint_pages must be a whole number, 1 or more"):
        SQLiteEventStore(db_path, checkpoint_pages=0)


def test_default_synchronous_level_is_full(db_path):
    with SQLiteEventStore(db_path) as store:
        assert store.synchronous == "FULL"
        assert all(s.synchronous == "FULL" for s in store.connection_settings())


def test_memory_store_uses_one_connection_with_the_level_and_busy_timeout():
    with SQLiteEventStore(":memory:", synchronous="NORMAL", busy_timeout=2) as store:
        (only,) = _read_from_threads(store, 3)
        assert only.synchronous == "NORMAL"
        assert only.busy_timeout_ms == 2000


def test_file_database_is_in_wal_mode_for_other_clients(db_path):
    SQLiteEventStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_unknown_synchronous_level_is_rejected(db_path):
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteEventStore(db_path, synchronous="SOMETIMES")


def test_missing_folder_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-dir" / "events.db"
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        SQLiteEventStore(missing)


def test_events_survive_closing_and_reopening(db_path):
    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store)
        account = Account("acc-1")
        account.open("ann", 10)
        repo.save_with_command(account, "cmd-1")
    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store)
        assert repo.load("acc-1").state.balance == 10
        assert store.processed_command("cmd-1") is not None


def test_reopening_keeps_the_schema_version(db_path):
    SQLiteEventStore(db_path).close()
    SQLiteEventStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_database_from_a_newer_version_is_refused(db_path):
    SQLiteEventStore(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(RuntimeError, match="newer"):
        SQLiteEventStore(db_path)


def test_closed_store_refuses_use_with_a_clear_error(db_path):
    store = SQLiteEventStore(db_path)
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StoreClosedError, match="closed"):
        store.read_all()
    with pytest.raises(StoreClosedError):
        store.append("acc-1", "Account", 0, [])


def test_two_store_objects_on_one_file_see_each_others_commits(db_path):
    with SQLiteEventStore(db_path) as writer, SQLiteEventStore(db_path) as reader:
        repo = account_repository(writer)
        account = Account("acc-1")
        account.open("ann")
        repo.save(account)
        assert reader.stream_version("acc-1") == 1
        account.deposit(1)
        repo.save(account)
        assert reader.head_position() == 2


def test_each_memory_store_is_a_private_database():
    with SQLiteEventStore(":memory:") as one, SQLiteEventStore(":memory:") as two:
        account = Account("acc-1")
        account.open("ann")
        account_repository(one).save(account)
        assert one.stream_version("acc-1") == 1
        assert two.stream_version("acc-1") == 0


def test_connection_settings_do_not_grow_with_short_lived_threads(db_path):
    with SQLiteEventStore(db_path) as store:
        for _ in range(40):
            batch = [threading.Thread(target=store.stream_version, args=("a",)) for _ in range(50)]
            for t in batch:
                t.start()
            for t in batch:
                t.join(timeout=30)
        # 2,000 threads read and ended: their connections and entries went with them.
        assert [s.role for s in store.connection_settings()] == ["writer"]
        assert store.stream_version("a") == 0
        assert [s.role for s in store.connection_settings()] == ["writer", "reader"]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("30", TypeError),  # as read from an environment variable: was a 2,000-digit string
        (None, TypeError),
        (True, TypeError),
        (-5, ValueError),  # was accepted; every append then raised a raw ValueError
        (float("nan"), ValueError),
        (float("inf"), ValueError),
    ],
)
def test_a_busy_timeout_that_is_no_number_of_seconds_is_refused_naming_it(db_path, value, error):
    with pytest.raises(error, match="busy_timeout"):
        SQLiteEventStore(db_path, busy_timeout=value)


@pytest.mark.parametrize("option", [{"synchronous": 2}, {"checkpoint_pages": "1000"}])
def test_constructor_options_of_the_wrong_type_are_refused_naming_them(db_path, option):
    [(name, _)] = option.items()
    with pytest.raises(ValueError, match=name):
        SQLiteEventStore(db_path, **option)


def test_a_busy_timeout_longer_than_sqlite_holds_is_its_longest_never_no_wait(db_path):
    # 2**31 ms or more wrapped to 0 ms in SQLite: a year's wait became none at all.
    with SQLiteEventStore(db_path, busy_timeout=365 * 24 * 3600) as store:
        assert {s.busy_timeout_ms for s in store.connection_settings()} == {2**31 - 1}
        store.append("a", "A", 0, [NewEvent(new_event_id(), "t.E", b"")])


@pytest.mark.parametrize("path", [":memory:", "file"])
def test_a_zero_busy_timeout_does_not_make_the_process_own_threads_fail_each_other(db_path, path):
    # 0 means "fail at once when another process holds the file"; threads of this
    # process taking turns at the writer failed with StoreBusyError (233 of 800 in memory).
    target = ":memory:" if path == ":memory:" else db_path
    failures: list[BaseException] = []
    with SQLiteEventStore(target, busy_timeout=0, group_commit=False) as store:

        def work(t: int) -> None:
            try:
                for i in range(40):
                    store.append(f"a-{t}-{i}", "A", 0, [NewEvent(new_event_id(), "t.E", b"")])
                    store.load_stream(f"a-{t}-{i}")
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert store.head_position() == 320


@pytest.mark.parametrize("group_commit", [True, False], ids=["grouped", "ungrouped"])
def test_a_file_deleted_while_open_refuses_writes_and_new_readers_naming_it(tmp_path, group_commit):
    # SQLite wrote on into the deleted file and acknowledged every append, all of it lost
    # at close; a reader on a new thread created a new, empty database at the path.
    path = tmp_path / "gone.db"
    with SQLiteEventStore(path, group_commit=group_commit) as store:
        store.append("a", "A", 0, [NewEvent(new_event_id(), "t.E", b"")], command_id="c0")
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"gone.db{suffix}").unlink(missing_ok=True)
        with pytest.raises(StorageError, match="was deleted, moved or replaced") as caught:
            store.append("b", "A", 0, [NewEvent(new_event_id(), "t.E", b"")], command_id="c1")
        assert caught.value.path == str(path)
        errors: list[BaseException] = []

        def read() -> None:
            try:
                store.head_position()
            except BaseException as exc:
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        assert [type(e) for e in errors] == [StorageError]
        assert not path.exists()  # no empty database made in its place


def test_a_store_opened_by_a_relative_path_keeps_its_file_after_a_chdir(tmp_path, monkeypatch):
    # A reader opened after the chdir opened the relative path in the new folder: an empty
    # database there, and a raw "no such table: events".
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with SQLiteEventStore("rel.db") as store:
        store.append("x", "A", 0, [NewEvent(new_event_id(), "t.E", b"")])
        monkeypatch.chdir(tmp_path / "b")
        heads: list[int] = []
        reader = threading.Thread(target=lambda: heads.append(store.head_position()))
        reader.start()
        reader.join()
        assert heads == [1]
        store.append("y", "A", 0, [NewEvent(new_event_id(), "t.E", b"")])
    assert list((tmp_path / "b").iterdir()) == []


def test_numbers_of_other_real_types_are_taken_for_busy_timeout_and_checkpoint_pages(db_path):
    from fractions import Fraction

    import numpy as np

    with SQLiteEventStore(db_path, busy_timeout=np.int64(2), checkpoint_pages=np.int64(500)) as s:
        assert {c.busy_timeout_ms for c in s.connection_settings()} == {2000}
        assert {c.checkpoint_pages for c in s.connection_settings()} == {500}
    with SQLiteEventStore(db_path, busy_timeout=Fraction(1, 2)) as s:
        assert {c.busy_timeout_ms for c in s.connection_settings()} == {500}
