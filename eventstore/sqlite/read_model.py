"""SQLite read models: a projection's tables and its checkpoint in one transaction.

A batch of events is handled inside one transaction on the read model's
database, and the checkpoint is written in that same transaction (DESIGN
decision 5). The stored checkpoint is read inside the transaction first and
events at or below it are skipped, so redelivery after a crash, or two
runners of one projection racing, never apply an event twice; a batch that
does not continue from the stored checkpoint (someone reset the projection
meanwhile) is not applied at all and the runner reads on from the checkpoint.

The read model may live in the event store's own file (pass the store) or in
a file of its own (pass a path).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..core.errors import StoreClosedError
from ..core.events import Event, timestamp_from_micros
from ..core.projection import Projection, ProjectionContext
from ..core.projections.read_models import (
    BatchOutcome,
    HandlerEndedTransactionError,
    HandlerFailedError,
    ReadModelClosedError,
    handle_events,
)
from ..core.projections.status import DeadLetter, ProjectionFailure
from .checkpoints import (
    SCANNED_POSITION_COLUMN,
    add_scanned_position_column,
    read_checkpoint,
    read_progress,
    write_checkpoint,
)
from .connections import ConnectionPool
from .in_transaction import EventStoreInTransaction
from .schema import mark_read_model_file
from .store import SQLiteEventStore

# Same definition as the store's migrations 1 and 3, so a read model may share the store's file.
_CHECKPOINTS_TABLE = f"""
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name            TEXT    NOT NULL PRIMARY KEY,
    position        INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    {SCANNED_POSITION_COLUMN}
) WITHOUT ROWID
"""
_DEAD_LETTERS_TABLE = """
CREATE TABLE IF NOT EXISTS projection_dead_letters (
    projection      TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    error_type      TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    traceback       TEXT    NOT NULL,
    failed_at       INTEGER NOT NULL,  -- microseconds since the epoch, UTC
    PRIMARY KEY (projection, position)
) WITHOUT ROWID
"""
_INSERT_DEAD_LETTER = (
    "INSERT OR REPLACE INTO projection_dead_letters (projection, position, event_id, "
    "event_type, aggregate_id, error_type, message, traceback, failed_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Guard:
    """Keeps a projection's code from ending the read model's transaction on ``conn``.

    While ``authorize`` is the connection's authorizer, SQLite refuses statements that
    end a transaction, so the batch stays whole and can be rolled back; ``check`` after
    each handler raises ``HandlerEndedTransactionError`` when one was tried, or when the
    transaction ended anyway (the authorizer replaced, say).
    """

    def __init__(self, conn: sqlite3.Connection, projection: str) -> None:
        self._conn = conn
        self.projection = projection
        self.refused: str | None = None

    def authorize(self, action: int, arg1: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and arg1 != "BEGIN":
            self.refused = self.refused or arg1
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def check(self, position: int, cause: BaseException | None = None) -> None:
        """Raise when the code just run tried to end the transaction (or did).

        Code that raised without trying to end it is failing as any handler fails, even
        when SQLite rolled the transaction back itself (a trigger's RAISE(ROLLBACK), a
        full disk): nothing was committed, and the batch is handled as usual.
        """
        ended = not self._conn.in_transaction
        if cause is not None and self.refused is None:
            return
        if self.refused is not None or ended:
            raise HandlerEndedTransactionError(
                self.projection, position, self.refused, ended
            ) from cause

    def watch(self, projection: Projection) -> Projection:
        """``projection`` with ``check`` after each call of its handler."""
        return _Checked(projection, self)


class _Checked:
    """A projection whose handler is followed by its guard's check (see ``_Guard``)."""

    def __init__(self, projection: Projection, guard: _Guard) -> None:
        self.name = projection.name
        self._projection = projection
        self._guard = guard

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        try:
            self._projection.handle(event, ctx)
        except Exception as exc:
            self._guard.check(event.position, exc)
            raise
        self._guard.check(event.position)

    def reset(self, ctx: ProjectionContext) -> None:
        try:
            self._projection.reset(ctx)
        except Exception as exc:
            self._guard.check(0, exc)
            raise
        self._guard.check(0)


class SQLiteReadModel:
    """A read model in SQLite for the projection runner (the ``ReadModel`` port).

    ``target`` is the ``SQLiteEventStore`` whose file should hold the read
    model (writes then share the store's writer connection and lock, and
    handlers may append to the store through ``ctx.store``, atomically with
    the batch and its checkpoint), or the
    path of another database file (created when missing; ``":memory:"`` works
    in one process). Handlers get the open transaction as ``ctx.connection``;
    ``reset(ctx)`` runs once before a projection's first event and before each
    rebuild, in the same transaction that sets the checkpoint to 0: create or
    empty your tables there. Run statements with ``execute``/``executemany``:
    ``executescript`` (which commits first), ``commit()`` and ``rollback()`` are
    refused while projection code runs (``HandlerEndedTransactionError``), and so
    is a write through the store object instead of ``ctx.store``
    (``StoreWriteInBatchError``).
    """

    def __init__(
        self,
        target: SQLiteEventStore | str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
    ) -> None:
        self._store: SQLiteEventStore | None = None
        if isinstance(target, SQLiteEventStore):
            self._db: ConnectionPool = target._db
            self._owns_db = False
            self._store = target
            self.path = target.path
        else:
            self.path = os.fspath(target)
            self._db = _open_pool(self.path, synchronous, busy_timeout)
            self._owns_db = True
        try:
            with self._db.transaction() as conn:
                mark_read_model_file(conn, self.path)
                conn.execute(_CHECKPOINTS_TABLE)
                add_scanned_position_column(conn)  # a file made before it had the column
                conn.execute(_DEAD_LETTERS_TABLE)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the read model's own connections (a store's are left to the store)."""
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> SQLiteReadModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteReadModel({self.path!r})"

    @contextlib.contextmanager
    def _open(self) -> Iterator[None]:
        """Say "read model" when its own (closed) database is used: a new one is the fix."""
        try:
            yield
        except StoreClosedError as exc:
            if not self._owns_db or isinstance(exc, ReadModelClosedError):
                raise
            raise ReadModelClosedError(self.path, "SQLiteReadModel") from exc

    # -- reading the read model --------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for queries on the read model (its committed state)."""
        with self._open(), self._db.reading() as conn:
            yield conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a query on the read model, for notebooks and tests."""
        with self._open(), self._db.reading() as conn:
            return conn.execute(sql, params).fetchall()

    # -- the ReadModel port ------------------------------------------------------------
    def load_checkpoint(self, name: str) -> int:
        with self._open(), self._db.reading() as conn:
            return read_checkpoint(conn, name)

    def load_scanned_position(self, name: str) -> int:
        with self._open(), self._db.reading() as conn:
            return read_progress(conn, name)[1]

    def save_scanned_position(self, name: str, after_position: int, scanned_to: int) -> int:
        with self._open(), self._db.transaction() as conn:
            checkpoint, stored = read_progress(conn, name)
            if stored != after_position or scanned_to <= stored:
                return stored
            write_checkpoint(conn, name, checkpoint, scanned_to)
            return scanned_to

    def prepare(self, projection: Projection) -> int:
        name = projection.name
        with self._open(), self._db.transaction() as conn:
            row = conn.execute(
                "SELECT position FROM projection_checkpoints WHERE name = ?", (name,)
            ).fetchone()
            if row is not None:
                return int(row[0])
            with self._guarded(conn, name) as guard:
                guard.watch(projection).reset(ProjectionContext(name, 0, conn))
            write_checkpoint(conn, name, 0)
            return 0

    def reset(self, projection: Projection) -> None:
        name = projection.name
        with self._open(), self._db.transaction() as conn:
            with self._guarded(conn, name) as guard:
                guard.watch(projection).reset(ProjectionContext(name, 0, conn))
            write_checkpoint(conn, name, 0)
            conn.execute("DELETE FROM projection_dead_letters WHERE projection = ?", (name,))

    def apply(
        self,
        projection: Projection,
        after_position: int,
        events: Sequence[Event],
        *,
        dead_letter: bool = False,
        scanned_to: int | None = None,
    ) -> BatchOutcome:
        name = projection.name
        ctx = ProjectionContext(name)
        outcome = BatchOutcome(checkpoint=after_position, scanned_position=after_position)
        pending = list(events)
        after = after_position
        cut = len(pending)  # handle pending[:cut] in the next transaction
        set_aside: ProjectionFailure | None = None  # pending[cut], to dead-letter
        failure: ProjectionFailure | None = None  # pending[cut], to stop at
        first = True
        while True:
            # This transaction finishes the batch when it handles (or sets aside) its last event.
            complete = failure is None and cut + (set_aside is not None) == len(pending)
            appends: EventStoreInTransaction | None = None
            committed = False
            try:
                with self._open(), self._db.transaction() as conn:
                    if self._store is not None:
                        ctx.store = appends = EventStoreInTransaction(self._store, conn, name)
                    stored_checkpoint, stored = read_progress(conn, name)
                    if first:
                        outcome.skipped = sum(1 for e in pending if e.position <= stored)
                        first = False
                    if stored < after:
                        # Reset (or rebuilding) elsewhere: this batch does not continue it.
                        outcome.checkpoint, outcome.scanned_position = stored_checkpoint, stored
                        return outcome
                    ctx.connection = conn
                    with self._guarded(conn, name) as guard:
                        handled = handle_events(guard.watch(projection), pending[:cut], ctx, stored)
                    checkpoint = stored_checkpoint
                    if cut and pending[cut - 1].position > stored:
                        checkpoint = pending[cut - 1].position
                    if set_aside is not None and set_aside.position > stored:
                        conn.execute(_INSERT_DEAD_LETTER, _dead_letter_row(set_aside))
                        checkpoint = set_aside.position
                    scanned = max(stored, checkpoint)
                    if complete and scanned_to is not None:
                        scanned = max(scanned, scanned_to)
                    if (checkpoint, scanned) != (stored_checkpoint, stored):
                        write_checkpoint(conn, name, checkpoint, scanned)
                committed = True
            except HandlerFailedError as failed:
                error = failed.failure.error
                if isinstance(error, HandlerEndedTransactionError) and error.ended:
                    # What the batch wrote before may be committed: doing it again could apply
                    # it twice, so stop at the event whose handler ended the transaction.
                    outcome.failure = failed.failure
                    return outcome
                # Rolled back: do the events before the failing one again, without it.
                cut = failed.index
                if dead_letter:
                    set_aside, failure = failed.failure, None
                else:
                    set_aside, failure = None, failed.failure
                continue
            finally:
                ctx.connection = None
                if appends is not None:
                    # Commit listeners hear of the handlers' appends only once they committed.
                    appends.end(committed=committed)
            outcome.handled += handled
            outcome.checkpoint, outcome.scanned_position = checkpoint, scanned
            if failure is not None:
                outcome.failure = failure
                return outcome
            if set_aside is None:
                return outcome
            outcome.dead_letters.append(set_aside)
            pending = pending[cut + 1 :]
            if not pending:
                return outcome
            after, cut, set_aside = scanned, len(pending), None

    @contextlib.contextmanager
    def _guarded(self, conn: sqlite3.Connection, name: str) -> Iterator[_Guard]:
        """Run projection code on ``conn`` under a ``_Guard``, with this thread marked as
        running ``name`` (a write through the store object then fails, naming it)."""
        guard = _Guard(conn, name)
        conn.set_authorizer(guard.authorize)
        try:
            with self._db.running_projection(name):
                yield guard
        finally:
            with contextlib.suppress(sqlite3.Error):  # closed under us: nothing to undo
                conn.set_authorizer(None)

    def dead_letters(self, name: str) -> list[DeadLetter]:
        with self._open(), self._db.reading() as conn:
            rows = conn.execute(
                "SELECT projection, position, event_id, event_type, aggregate_id, error_type, "
                "message, traceback, failed_at FROM projection_dead_letters "
                "WHERE projection = ? ORDER BY position",
                (name,),
            ).fetchall()
        return [
            ProjectionFailure(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], timestamp_from_micros(r[8])
            )
            for r in rows
        ]


def _open_pool(path: str, synchronous: str, busy_timeout: float) -> ConnectionPool:
    # Two processes opening a new file at once: switching it to WAL can fail with "database
    # is locked" without waiting for the busy timeout, so wait for it here.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return ConnectionPool(path, synchronous, busy_timeout)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _dead_letter_row(f: ProjectionFailure) -> tuple[object, ...]:
    return (
        f.projection,
        f.position,
        f.event_id,
        f.event_type,
        f.aggregate_id,
        f.error_type,
        f.message,
        f.traceback,
        time.time_ns() // 1000,
    )
