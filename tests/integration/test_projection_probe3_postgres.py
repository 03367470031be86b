"""PostgreSQL read models keep a batch whole as SQLite's do: a handler that ends the
batch's transaction (COMMIT) or swallows a database error is stopped at its own event,
saying why, instead of applying events twice or failing at another event."""

from __future__ import annotations

import logging

import psycopg
import pytest

from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import (
    HandlerEndedTransactionError,
    ProjectionManager,
    ProjectionStatus,
    ReadModelClosedError,
)
from eventstore.postgres import PostgresReadModel
from eventstore.postgres.read_model import CaughtDatabaseError
from tests.support import postgres

KIND = "pgprobe3.v1.Entered"


def _append(store, *plates: str) -> None:
    for plate in plates:
        version = store.stream_version("lot")
        store.append("lot", "Lot", version, [NewEvent(new_event_id(), KIND, plate.encode())])


class Cars:
    name = "cars"

    def __init__(self, commit_at: int = 0, fail_at: int = 0) -> None:
        self.commit_at = commit_at
        self.fail_at = fail_at

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS cars (position BIGINT, plate TEXT)")
        ctx.connection.execute("DELETE FROM cars")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        ctx.connection.execute(
            "INSERT INTO cars VALUES (%s, %s)", (ctx.position, event.data.decode())
        )
        if ctx.position == self.commit_at:
            ctx.connection.execute("COMMIT")
        if ctx.position == self.fail_at:
            raise RuntimeError(f"bug at {ctx.position}")


def test_a_handler_that_commits_is_stopped_at_its_event_and_nothing_after_is_applied() -> None:
    with postgres.open_store() as store:
        _append(store, "P1", "P2", "P3", "P4")
        model = PostgresReadModel(store)
        manager = ProjectionManager(store)
        manager.register(Cars(commit_at=2, fail_at=3), read_model=model)
        manager.catch_up()
        info = manager.status("cars")
        assert info.status is ProjectionStatus.FAILED
        assert info.checkpoint == 0
        assert info.last_error is not None and info.last_error.position == 2
        error = info.last_error.error
        assert isinstance(error, HandlerEndedTransactionError) and error.ended
        assert "COMMIT" in str(error) and "rebuild('cars')" in str(error)
        # Only what the handler committed itself is there: each event at most once.
        assert model.query("SELECT position FROM cars ORDER BY position") == [(1,), (2,)]
        # Rebuilt with a fixed handler, every event is applied exactly once.
        manager.unregister("cars")
        manager.register(Cars(), read_model=model)
        assert manager.rebuild("cars").status is ProjectionStatus.READY
        rows = model.query("SELECT position, COUNT(*) FROM cars GROUP BY position ORDER BY 1")
        assert rows == [(1, 1), (2, 1), (3, 1), (4, 1)]


class Plates:
    """One row per plate; a plate seen again is ignored by catching the database error."""

    name = "plates"

    def __init__(self, savepoint: bool) -> None:
        self.savepoint = savepoint

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute(
            "CREATE TABLE IF NOT EXISTS plates (plate TEXT PRIMARY KEY, position BIGINT)"
        )
        ctx.connection.execute("DELETE FROM plates")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        insert = "INSERT INTO plates VALUES (%s, %s)"
        try:
            if self.savepoint:
                with ctx.connection.transaction():
                    ctx.connection.execute(insert, (event.data.decode(), ctx.position))
            else:
                ctx.connection.execute(insert, (event.data.decode(), ctx.position))
        except psycopg.IntegrityError:
            pass  # seen before


def test_a_handler_that_swallows_a_database_error_fails_at_its_own_event_naming_it() -> None:
    with postgres.open_store() as store:
        _append(store, "A", "B", "A", "C")
        model = PostgresReadModel(store)
        manager = ProjectionManager(store)
        manager.register(Plates(savepoint=False), read_model=model)
        manager.catch_up()
        info = manager.status("plates")
        assert info.status is ProjectionStatus.FAILED
        assert info.checkpoint == 2  # the events before it are handled and committed
        assert info.last_error is not None and info.last_error.position == 3
        assert isinstance(info.last_error.error, CaughtDatabaseError)
        assert "ctx.connection.transaction()" in info.last_error.message
        assert model.query("SELECT plate, position FROM plates ORDER BY plate") == [
            ("A", 1),
            ("B", 2),
        ]
        # The fix the message names works: the statement in its own savepoint.
        manager.unregister("plates")
        manager.register(Plates(savepoint=True), read_model=model)
        manager.catch_up()
        assert manager.status("plates").status is ProjectionStatus.READY
        assert model.query("SELECT plate, position FROM plates ORDER BY plate") == [
            ("A", 1),
            ("B", 2),
            ("C", 4),
        ]


def test_a_closed_postgres_read_model_of_its_own_fails_its_projection_saying_read_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with postgres.open_store() as store:
        _append(store, "A")
        model = PostgresReadModel(postgres.server_dsn(), schema=postgres.fresh_schema())
        manager = ProjectionManager(store)
        manager.register(Cars(), read_model=model)
        manager.catch_up()
        model.close()
        _append(store, "B")
        with caplog.at_level(logging.ERROR, logger="eventstore.projections"):
            assert manager.catch_up() == {"cars": 0}  # failed, not raised as the source's
        assert "failed at position 2" in caplog.text
        assert "ReadModelClosedError" in caplog.text
        with pytest.raises(ReadModelClosedError, match="make a new PostgresReadModel"):
            manager.status("cars")
