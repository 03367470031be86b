"""A SQLite read model's batch transaction stays whole whatever a handler does with it.

sqlite3's ``executescript()`` commits the open transaction before it runs (Python
3.11), ``commit()`` and ``rollback()`` end it, and a write through the store object
(instead of ``ctx.store``) would start a second one on the same connection. Each is
refused with an error naming the projection, the position and the fix, at the event
whose handler did it, and no event is applied twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventstore import Event, NewEvent, ProjectionContext, StoreBusyError, new_event_id
from eventstore.core.projections import (
    ProjectionManager,
    ProjectionStatus,
    StoreWriteInBatchError,
)
from eventstore.sqlite import SQLiteEventStore, connections
from eventstore.sqlite.read_model import HandlerEndedTransactionError, SQLiteReadModel

KIND = "testbank.v1.MoneyDeposited"
ECHO = "testbank.v1.Echoed"

Misstep = Callable[[sqlite3.Connection], object]

# Ways a handler can end the transaction it was handed.
ENDINGS: dict[str, Misstep] = {
    "executescript": lambda conn: conn.executescript("SELECT 1;"),
    "commit()": lambda conn: conn.commit(),
    "rollback()": lambda conn: conn.rollback(),
    "execute COMMIT": lambda conn: conn.execute("COMMIT"),
}


class Rows:
    """One row per event handled; at ``misstep_at`` it also does ``misstep`` to its connection
    (and, with ``swallow``, catches what that raises and goes on)."""

    name = "rows"

    def __init__(
        self, misstep_at: int = 0, misstep: Misstep | None = None, swallow: bool = False
    ) -> None:
        self.misstep_at = misstep_at
        self.misstep = misstep
        self.swallow = swallow

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS rows (position INTEGER NOT NULL)")
        ctx.connection.execute("DELETE FROM rows")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        ctx.connection.execute("INSERT INTO rows VALUES (?)", (ctx.position,))
        if self.misstep is not None and ctx.position == self.misstep_at:
            try:
                self.misstep(ctx.connection)
            except sqlite3.DatabaseError:
                if not self.swallow:
                    raise


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(db_path) as s:
        s.append("a", "Account", 0, [NewEvent(new_event_id(), KIND, b"") for _ in range(6)])
        yield s


@pytest.fixture
def model(tmp_path: Path) -> Iterator[SQLiteReadModel]:
    with SQLiteReadModel(tmp_path / "read.db") as m:
        yield m


def rows(model: SQLiteReadModel) -> list[int]:
    return [row[0] for row in model.query("SELECT position FROM rows ORDER BY rowid")]


@pytest.mark.parametrize("ending", ENDINGS, ids=str)
def test_a_handler_that_ends_the_transaction_fails_at_its_event_and_applies_nothing_twice(
    store, model, ending
) -> None:
    manager = ProjectionManager(store)
    manager.register(Rows(3, ENDINGS[ending]), read_model=model)
    manager.catch_up()
    info = manager.status("rows")
    assert info.status is ProjectionStatus.FAILED
    assert info.checkpoint == 2
    assert rows(model) == [1, 2]
    assert info.last_error is not None and info.last_error.position == 3
    error = info.last_error.error
    assert isinstance(error, HandlerEndedTransactionError)
    assert (error.projection, error.position, error.ended) == ("rows", 3, False)
    message = str(error)
    assert "'rows'" in message and "position 3" in message
    assert "executescript() commits" in message and "execute() or executemany()" in message


def test_a_handler_that_catches_the_refusal_and_goes_on_still_fails_at_its_event(
    store, model
) -> None:
    manager = ProjectionManager(store)
    manager.register(Rows(3, ENDINGS["executescript"], swallow=True), read_model=model)
    manager.catch_up()
    info = manager.status("rows")
    assert (info.status, info.checkpoint, rows(model)) == (ProjectionStatus.FAILED, 2, [1, 2])
    assert info.last_error is not None
    assert isinstance(info.last_error.error, HandlerEndedTransactionError)


def test_after_the_handler_is_fixed_resume_applies_each_event_once(store, model) -> None:
    projection = Rows(3, ENDINGS["executescript"])
    manager = ProjectionManager(store)
    manager.register(projection, read_model=model)
    manager.catch_up()
    stopped = (manager.status("rows").checkpoint, rows(model))
    projection.misstep = None
    manager.resume("rows")
    manager.catch_up()
    info = manager.status("rows")
    assert stopped == (2, [1, 2])
    assert (info.status, info.checkpoint) == (ProjectionStatus.READY, 6)
    assert rows(model) == [1, 2, 3, 4, 5, 6]


def test_a_handler_that_did_end_the_transaction_is_stopped_there_without_a_replay(
    store, model
) -> None:
    # The authorizer that refuses COMMIT taken off first: the commit happens, and is seen.
    def commit_regardless(conn: sqlite3.Connection) -> None:
        conn.set_authorizer(None)
        conn.commit()

    manager = ProjectionManager(store)
    manager.register(Rows(3, commit_regardless), read_model=model)
    manager.catch_up()
    info = manager.status("rows")
    assert info.status is ProjectionStatus.FAILED
    assert rows(model) == [1, 2, 3]  # committed by the handler: once each, never replayed
    assert info.last_error is not None and info.last_error.position == 3
    error = info.last_error.error
    assert isinstance(error, HandlerEndedTransactionError) and error.ended
    assert "rebuild('rows')" in str(error)


class ScriptedReset(Rows):
    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.executescript(
            "CREATE TABLE IF NOT EXISTS rows (position INTEGER NOT NULL); DELETE FROM rows;"
        )


def test_a_reset_using_executescript_is_refused_with_an_error_naming_the_fix(store, model) -> None:
    manager = ProjectionManager(store)
    with pytest.raises(HandlerEndedTransactionError) as info:
        manager.register(ScriptedReset(), read_model=model)
    message = str(info.value)
    assert "'rows'" in message and "reset()" in message and "executemany()" in message
    assert model.query("SELECT name FROM sqlite_master WHERE name = 'rows'") == []
    assert model.query("SELECT * FROM projection_checkpoints") == []


# -- writing through the store object instead of ctx.store ----------------------------------
class Echo:
    """Appends an echo of each deposit, through ``ctx.store`` or (wrongly) the store itself."""

    name = "echo"
    event_types = (KIND,)

    def __init__(self, store: SQLiteEventStore, through_ctx_first: bool = False) -> None:
        self.store = store
        self.through_ctx_first = through_ctx_first

    def reset(self, ctx: ProjectionContext) -> None:
        pass

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        echo = [NewEvent(new_event_id(), ECHO, b"")]
        if self.through_ctx_first:
            ctx.store.append(f"echo-{ctx.position}", "Echo", 0, echo)
        self.store.append(f"echo-{ctx.position}-b", "Echo", 0, echo)


@pytest.mark.parametrize("through_ctx_first", [False, True], ids=["store", "ctx-then-store"])
def test_a_handler_appending_through_the_store_object_is_told_to_use_ctx_store(
    store, through_ctx_first
) -> None:
    manager = ProjectionManager(store)
    manager.register(Echo(store, through_ctx_first), read_model=SQLiteReadModel(store))
    manager.catch_up()
    info = manager.status("echo")
    assert info.status is ProjectionStatus.FAILED
    assert info.checkpoint == 0 and store.head_position() == 6  # nothing appended
    assert info.last_error is not None and info.last_error.position == 1
    error = info.last_error.error
    assert isinstance(error, StoreWriteInBatchError)
    assert error.projection == "echo"
    assert "ctx.store.append" in str(error) and store.path in str(error)


class Guarded(Rows):
    """Its table refuses the row of position 3 with a trigger that rolls the whole
    transaction back (SQLite's own rollback, as INSERT OR ROLLBACK or a full disk do)."""

    def reset(self, ctx: ProjectionContext) -> None:
        super().reset(ctx)
        ctx.connection.execute(
            "CREATE TRIGGER IF NOT EXISTS no_three BEFORE INSERT ON rows WHEN NEW.position = 3 "
            "BEGIN SELECT RAISE(ROLLBACK, 'three is refused'); END"
        )


def test_a_handler_whose_statement_sqlite_rolls_back_fails_as_any_handler(store, model):
    # It was blamed for ending the transaction (executescript, commit) and stopped for
    # good, and dead_letter=True could not set the event aside.
    manager = ProjectionManager(store)
    manager.register(Guarded(), read_model=model, dead_letter=True)
    manager.catch_up()
    info = manager.status("rows")
    assert info.status is ProjectionStatus.READY and info.checkpoint == 6
    assert rows(model) == [1, 2, 4, 5, 6]
    (letter,) = manager.dead_letters("rows")
    assert letter.position == 3 and letter.message == "three is refused"


class HandsOff:
    """Hands a read or an append of the store to another thread and waits for it: the
    batch's transaction holds the store's writer (in memory, its one connection)."""

    name = "hands-off"

    def __init__(self, store: SQLiteEventStore, call: str) -> None:
        self.store = store
        self.call = call
        self.outcomes: list[BaseException | None] = []

    def reset(self, ctx: ProjectionContext) -> None:
        pass

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        if self.outcomes:
            return

        def other() -> None:
            try:
                if self.call == "read":
                    self.store.load_stream("a")
                else:
                    self.store.append("b", "B", 0, [NewEvent(new_event_id(), ECHO, b"")])
                self.outcomes.append(None)
            except BaseException as exc:
                self.outcomes.append(exc)

        worker = threading.Thread(target=other, daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "the other thread still waits for the handler"


@pytest.mark.parametrize(
    ("path", "call"), [(":memory:", "read"), ("file", "append")], ids=["memory-read", "file-append"]
)
def test_a_call_handed_to_another_thread_inside_a_batch_fails_after_a_bounded_wait(
    tmp_path, monkeypatch, path, call
) -> None:
    # It waited for ever: the other thread for the writer, the handler for that thread.
    monkeypatch.setattr(connections, "IN_PROCESS_WAIT", 0.5)  # 30 s in earnest
    db = ":memory:" if path == ":memory:" else str(tmp_path / "events.db")
    with SQLiteEventStore(db, busy_timeout=0.2) as store:
        store.append("a", "Account", 0, [NewEvent(new_event_id(), KIND, b"")])
        hands_off = HandsOff(store, call)
        manager = ProjectionManager(store)
        manager.register(hands_off, read_model=SQLiteReadModel(store))
        started = time.monotonic()
        manager.catch_up()
        assert time.monotonic() - started < 5
        [error] = hands_off.outcomes
        assert isinstance(error, StoreBusyError)
        assert error.busy_timeout == 0.5 and error.in_process
        assert "another thread of this process" in str(error) and "ctx.store" in str(error)
        assert "waited 0.5 s" in str(error) and "SQLite gave up" not in str(error)
        assert manager.status("hands-off").status is ProjectionStatus.READY
        assert store.head_position() == 1  # the append from the other thread wrote nothing
