"""Opening stores from URLs (SQLAlchemy's grammar) and from ``file:`` URIs."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest

import eventstore
from eventstore import (
    AdapterUnavailableError,
    NewEvent,
    ReadOnlyStoreError,
    StoreURLError,
    new_event_id,
    open_store,
)
from eventstore.sqlite import SQLiteEventStore


def _event() -> NewEvent:
    return NewEvent(new_event_id(), "Deposited", b"x")


def _count_events(path: Path) -> int:
    conn = sqlite3.connect(path)
    count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    conn.close()
    return int(count)


def test_a_relative_sqlite_url_opens_the_file_under_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///events.db") as store:
        store.append("acc-1", "Account", 0, [_event()])
    assert _count_events(tmp_path / "events.db") == 1


def test_a_sqlite_url_with_four_slashes_opens_an_absolute_path(tmp_path):
    path = tmp_path / "abs.db"
    with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteEventStore)
        assert store.path == str(path)
        store.append("acc-1", "Account", 0, [_event()])
    assert _count_events(path) == 1


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
def test_memory_urls_open_a_private_store_in_memory(url):
    with open_store(url) as one, open_store(url) as two:
        one.append("acc-1", "Account", 0, [_event()])
        assert one.path == ":memory:"
        assert (one.stream_version("acc-1"), two.stream_version("acc-1")) == (1, 0)


def test_query_parameters_become_store_options(tmp_path):
    url = f"sqlite:///{tmp_path}/events.db?synchronous=NORMAL&busy_timeout=2.5&checkpoint_pages=500&verify=true"
    with open_store(url) as store:
        (writer,) = store.connection_settings()
        assert (writer.synchronous, writer.busy_timeout_ms, writer.checkpoint_pages) == (
            "NORMAL",
            2500,
            500,
        )


def test_keyword_options_win_over_the_query(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/e.db?synchronous=NORMAL", synchronous="FULL") as store:
        assert store.synchronous == "FULL"


def test_sqlite_uri_parameters_open_the_file_read_only(tmp_path):
    path = tmp_path / "with space.db"
    with open_store(path) as store:
        store.append("acc-1", "Account", 0, [_event()])
    with open_store(f"sqlite:///{quote(str(path))}?mode=ro") as store:
        assert store.stream_version("acc-1") == 1
        with pytest.raises(ReadOnlyStoreError):
            store.append("acc-1", "Account", 1, [_event()])


def test_plain_paths_and_memory_keep_working(tmp_path):
    with open_store(tmp_path / "plain.db") as store:
        store.append("acc-1", "Account", 0, [_event()])
    with open_store(str(tmp_path / "plain.db")) as store:
        assert store.stream_version("acc-1") == 1
    with open_store(":memory:") as store:
        assert store.head_position() == 0


def test_absolute_file_uris_open_in_the_store_and_through_open_store(tmp_path):
    path = tmp_path / "uri.db"
    with SQLiteEventStore(f"file:{path}") as store:
        store.append("acc-1", "Account", 0, [_event()])
    with SQLiteEventStore(f"file:{path}?mode=ro") as store:
        assert store.stream_version("acc-1") == 1
    with open_store(f"file://{path}?mode=ro") as store:
        assert store.stream_version("acc-1") == 1


def test_a_file_uri_in_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        SQLiteEventStore(f"file:{tmp_path}/no-such-dir/x.db?mode=rwc")


def test_a_memory_file_uri_is_a_store_in_memory():
    with SQLiteEventStore("file:scratch?mode=memory") as store:
        store.append("acc-1", "Account", 0, [_event()])
        assert store.stream_version("acc-1") == 1


def test_postgresql_urls_open_the_postgresql_adapter_and_hide_the_password():
    from eventstore.core.errors import StorageError

    with pytest.raises(StorageError) as caught:
        open_store("postgresql+psycopg://ann:s3cret@127.0.0.1:1/bank?connect_timeout=2")
    message = str(caught.value)
    assert "cannot connect" in message and "ann@127.0.0.1:1/bank" in message
    assert "s3cret" not in message


def test_an_adapter_whose_module_is_missing_is_unavailable(monkeypatch):
    from eventstore import stores

    monkeypatch.setitem(stores.ADAPTERS, "postgresql", ("PostgreSQL", "eventstore.nopg.urls:open_url"))
    with pytest.raises(AdapterUnavailableError) as caught:
        open_store("postgresql://ann:s3cret@db.example/bank")
    message = str(caught.value)
    assert "PostgreSQL adapter" in message and "not available" in message
    assert "s3cret" not in message and "ann:***@db.example" in message
    assert isinstance(caught.value, StoreURLError)


def test_an_unknown_scheme_lists_the_known_ones():
    with pytest.raises(StoreURLError) as caught:
        open_store("mysql://localhost/bank")
    assert "'mysql'" in str(caught.value)
    assert "sqlite://" in str(caught.value) and "postgresql://" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sqlite://host/events.db", "names no host"),
        ("sqlite:///events.db?synchronus=FULL", "unknown query parameter 'synchronus'"),
        ("sqlite:///events.db?busy_timeout=soon", "busy_timeout='soon'"),
        ("sqlite:///events.db?verify=maybe", "verify='maybe'"),
    ],
)
def test_bad_sqlite_urls_say_what_is_wrong(url, fragment):
    with pytest.raises(StoreURLError, match=fragment):
        open_store(url)


def test_store_url_errors_survive_pickling():
    error = StoreURLError("mysql://x", "no adapter", "Use sqlite.")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_open_store_is_part_of_the_public_face():
    assert "open_store" in eventstore.__all__
    assert eventstore.open_store is open_store
