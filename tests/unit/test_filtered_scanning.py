"""Filtered readers move past what they scanned, so an idle poll costs the same at any log size."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from eventstore import Event, NewEvent, Page, ProjectionContext, new_event_id
from eventstore.core.follow import follow
from eventstore.core.projections import CheckpointedReadModel, ProjectionManager, projection
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel
from eventstore.sqlite.schema import MIGRATIONS

WANTED = "bank.v1.AccountOpened"
OTHER = "bank.v1.MoneyDeposited"
NOISE = 10_000


class RecordingLog:
    """The store, passed through, remembering where each page read started and ended."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store
        self.reads: list[tuple[int, int]] = []

    def read_all(self, after_position: int = 0, **kw: object) -> list[Event]:
        return self.store.read_all(after_position, **kw)  # type: ignore[arg-type]

    def head_position(self) -> int:
        return self.store.head_position()

    def read_page(
        self, after_position: int, *, limit: int, event_types: Sequence[str] | None = None
    ) -> Page:
        page = self.store.read_page(after_position, limit=limit, event_types=event_types)
        self.reads.append((after_position, page.scanned_to))
        return page


def one_wanted_then_noise(store: SQLiteEventStore) -> None:
    store.append("acc-1", "Account", 0, [NewEvent(new_event_id(), WANTED, b"")])
    store.append(
        "acc-1", "Account", 1, [NewEvent(new_event_id(), OTHER, b"") for _ in range(NOISE)]
    )


class Opened:
    name = "opened"
    event_types = (WANTED,)

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS opened (id TEXT)")
        ctx.connection.execute("DELETE FROM opened")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        ctx.connection.execute("INSERT INTO opened VALUES (?)", (event.aggregate_id,))


def test_a_filtered_projection_stores_how_far_it_scanned_and_polls_from_there(
    db_path: Path, tmp_path: Path
) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(tmp_path / "read.db") as model:
        one_wanted_then_noise(store)
        head = store.head_position()
        manager = ProjectionManager(store)
        manager.register(Opened(), read_model=model)
        manager.catch_up()
        assert model.load_checkpoint("opened") == 1
        assert model.load_scanned_position("opened") == head

        # A restarted runner polls from the stored scanned position: it reads no row below it.
        log = RecordingLog(store)
        restarted = ProjectionManager(log)
        restarted.register(Opened(), read_model=model)
        restarted.catch_up()
        restarted.catch_up()
        assert log.reads == [(head, head), (head, head)]
        assert model.query("SELECT id FROM opened") == [("acc-1",)]


def test_a_projection_keeping_only_its_checkpoint_in_the_store_stores_its_scan_too(
    db_path: Path,
) -> None:
    seen: list[int] = []
    with SQLiteEventStore(db_path) as store:
        one_wanted_then_noise(store)
        manager = ProjectionManager(store)
        manager.register(
            projection("mails", event_types=[WANTED])(lambda e, ctx: seen.append(e.position)),
            read_model=CheckpointedReadModel(store),
        )
        manager.catch_up()
        assert seen == [1]
        assert store.load_checkpoint("mails") == 1
        assert store.load_scanned_position("mails") == store.head_position()


def test_a_filtered_follower_reads_on_after_what_it_scanned(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store:
        one_wanted_then_noise(store)
        head = store.head_position()
        log = RecordingLog(store)
        with follow(log, event_types=[WANTED], poll_interval=0.01) as sub:
            assert [e.position for e in sub.next_batch(timeout=0)] == [1]
            assert sub.next_batch(timeout=0) == []
            assert sub.next_batch(timeout=0) == []
            assert sub.position == 1 and sub.scanned_position == head
        assert log.reads == [(0, head), (head, head), (head, head)]


def test_a_store_of_schema_version_2_gains_the_scanned_position_column(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        for script in MIGRATIONS[:2]:
            conn.executescript(script)
        conn.execute("INSERT INTO projection_checkpoints VALUES ('old', 5, 0)")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    with SQLiteEventStore(db_path) as store:
        assert store.load_checkpoint("old") == store.load_scanned_position("old") == 5


def test_a_read_model_file_from_before_scanned_positions_gains_the_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE projection_checkpoints (name TEXT NOT NULL PRIMARY KEY, "
            "position INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID"
        )
        conn.execute("INSERT INTO projection_checkpoints VALUES ('old', 5, 0)")
    conn.close()
    with SQLiteReadModel(path) as model:
        assert model.load_checkpoint("old") == model.load_scanned_position("old") == 5


def noise(store: SQLiteEventStore, count: int) -> None:
    version = store.stream_version("acc-1")
    store.append(
        "acc-1", "Account", version, [NewEvent(new_event_id(), OTHER, b"") for _ in range(count)]
    )


@pytest.mark.parametrize("kind", ["sqlite", "checkpointed"])
def test_an_idle_poll_stores_its_scan_once_a_batch_of_positions_was_skipped(
    db_path: Path, kind: str
) -> None:
    with SQLiteEventStore(db_path) as store:
        model = SQLiteReadModel(store) if kind == "sqlite" else CheckpointedReadModel(store)
        one_wanted_then_noise(store)
        manager = ProjectionManager(store, batch_size=100)
        manager.register(Opened() if kind == "sqlite" else _opened_function(), read_model=model)
        manager.catch_up()
        scanned = model.load_scanned_position("opened")
        noise(store, 50)  # fewer than a batch: read past in memory, not stored
        log = RecordingLog(store)
        manager.source = log
        manager.catch_up()
        manager.catch_up()
        assert model.load_scanned_position("opened") == scanned
        assert log.reads[-1] == (scanned + 50, scanned + 50)
        noise(store, 60)  # now more than a batch since the stored scan: stored
        manager.catch_up()
        assert model.load_scanned_position("opened") == store.head_position()
        assert model.load_checkpoint("opened") == 1


def test_a_scan_is_not_stored_over_a_reset_made_meanwhile(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        one_wanted_then_noise(store)
        manager = ProjectionManager(store, batch_size=100)
        manager.register(Opened(), read_model=model)
        manager.catch_up()
        other = ProjectionManager(store)
        other.register(Opened(), read_model=model)
        model.reset(Opened())  # another runner resets it
        noise(store, 200)
        manager.catch_up()  # stores nothing over the reset, and reads on from it
        assert model.load_checkpoint("opened") == 1
        assert model.load_scanned_position("opened") == store.head_position()
        assert model.query("SELECT COUNT(*) FROM opened") == [(1,)]


def _opened_function():  # type: ignore[no-untyped-def]
    return projection("opened", event_types=[WANTED])(lambda event, ctx: None)
