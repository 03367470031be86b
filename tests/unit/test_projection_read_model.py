"""SQLite read models: batch and checkpoint in one transaction, each event applied once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import ProjectionManager
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel

KIND = "testbank.v1.MoneyDeposited"


class Applied:
    """Records every position it applies, so a double application shows as a duplicate row."""

    name = "applied"

    def __init__(self) -> None:
        self.resets = 0
        self.interrupt_at: int | None = None
        self.saw_open_transaction: list[bool] = []

    def reset(self, ctx: ProjectionContext) -> None:
        self.resets += 1
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS applied (position INTEGER NOT NULL)")
        ctx.connection.execute("DELETE FROM applied")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        if ctx.position == self.interrupt_at:
            raise KeyboardInterrupt  # not an Exception: as if the process were stopped here
        self.saw_open_transaction.append(ctx.connection.in_transaction)
        ctx.connection.execute("INSERT INTO applied VALUES (?)", (ctx.position,))


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(db_path) as s:
        s.append("a", "Account", 0, [NewEvent(new_event_id(), KIND, b"") for _ in range(6)])
        yield s


@pytest.fixture
def model(tmp_path: Path) -> Iterator[SQLiteReadModel]:
    with SQLiteReadModel(tmp_path / "read.db") as m:
        yield m


def applied(model: SQLiteReadModel) -> list[int]:
    return [row[0] for row in model.query("SELECT position FROM applied ORDER BY rowid")]


def test_a_redelivered_batch_is_applied_once(store, model) -> None:
    projection = Applied()
    model.prepare(projection)
    events = store.read_all(0)
    model.apply(projection, 0, events)
    outcome = model.apply(projection, 0, events)
    assert (outcome.handled, outcome.skipped, outcome.checkpoint) == (0, 6, 6)
    assert applied(model) == [1, 2, 3, 4, 5, 6]


def test_an_overlapping_batch_applies_only_the_events_after_the_checkpoint(store, model) -> None:
    projection = Applied()
    model.prepare(projection)
    model.apply(projection, 0, store.read_all(0, limit=4))
    outcome = model.apply(projection, 2, store.read_all(2))
    assert (outcome.handled, outcome.skipped, outcome.checkpoint) == (2, 2, 6)
    assert applied(model) == [1, 2, 3, 4, 5, 6]


def test_a_batch_that_does_not_continue_the_checkpoint_is_not_applied(store, model) -> None:
    projection = Applied()
    model.prepare(projection)
    model.apply(projection, 0, store.read_all(0, limit=3))
    model.reset(projection)  # someone else started a rebuild
    outcome = model.apply(projection, 3, store.read_all(3))
    assert (outcome.handled, outcome.checkpoint) == (0, 0)
    assert applied(model) == []


def test_the_handler_gets_the_open_transaction_and_the_checkpoint_commits_with_it(
    store, model
) -> None:
    projection = Applied()
    model.prepare(projection)
    model.apply(projection, 0, store.read_all(0))
    assert projection.saw_open_transaction == [True] * 6
    assert model.load_checkpoint("applied") == 6


def test_a_batch_interrupted_midway_leaves_neither_rows_nor_checkpoint(store, model) -> None:
    projection = Applied()
    model.prepare(projection)
    model.apply(projection, 0, store.read_all(0, limit=2))
    projection.interrupt_at = 5
    with pytest.raises(KeyboardInterrupt):
        model.apply(projection, 2, store.read_all(2))
    assert model.load_checkpoint("applied") == 2
    assert applied(model) == [1, 2]


def test_reset_runs_once_before_the_first_event_not_on_every_start(store, model) -> None:
    projection = Applied()
    model.prepare(projection)
    model.apply(projection, 0, store.read_all(0))
    assert model.prepare(projection) == 6
    assert projection.resets == 1
    assert applied(model) == [1, 2, 3, 4, 5, 6]


def test_a_read_model_in_the_store_file_writes_the_store_checkpoint(store) -> None:
    model = SQLiteReadModel(store)
    manager = ProjectionManager(store)
    manager.register(Applied(), read_model=model)
    manager.catch_up()
    assert store.load_checkpoint("applied") == 6
    assert applied(model) == [1, 2, 3, 4, 5, 6]
    model.close()
    assert not store.closed  # the store's connections belong to the store


def test_a_new_read_model_file_is_created_with_its_checkpoint_table(tmp_path) -> None:
    with SQLiteReadModel(tmp_path / "new.db") as model:
        assert model.load_checkpoint("anything") == 0
        assert model.dead_letters("anything") == []
