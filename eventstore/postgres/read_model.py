"""PostgreSQL read models: a projection's rows and its checkpoint in one PostgreSQL transaction.

The counterpart of ``SQLiteReadModel``: each batch is handled in one
transaction that also writes the checkpoint, after reading the stored
checkpoint inside it (redelivered events are skipped; a batch that does not
continue the stored checkpoint is not applied). Handlers get the
transaction's connection as ``ctx.connection`` (psycopg: ``%s`` placeholders)
and, when the read model is on a store, ``ctx.store``, whose appends join the
same transaction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ..core.errors import EventStoreError, StoreClosedError
from ..core.events import Event, NewEvent, timestamp_from_micros
from ..core.ports import DEFAULT_COMMAND_TTL, AppendResult
from ..core.projection import Projection, ProjectionContext
from ..core.projections.read_models import (
    BatchOutcome,
    HandlerEndedTransactionError,
    HandlerFailedError,
    ReadModelClosedError,
    handle_events,
)
from ..core.projections.status import DeadLetter, ProjectionFailure
from ..core.units import StreamAppend, UnitResult
from .limits import check_text, check_texts
from .store import EVENT_COLUMNS, PostgresEventStore, read_progress, write_checkpoint

_INSERT_DEAD_LETTER = (
    "INSERT INTO projection_dead_letters (projection, position, event_id, event_type, "
    "aggregate_id, error_type, message, traceback, failed_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (projection, position) DO UPDATE "
    "SET event_id = excluded.event_id, error_type = excluded.error_type, "
    "message = excluded.message, traceback = excluded.traceback, failed_at = excluded.failed_at"
)


class TransactionEndedError(EventStoreError):
    def __init__(self, projection: str) -> None:
        self.projection = projection
        super().__init__(
            f"the event store of projection {projection!r}'s handler was used after its "
            "batch's transaction ended. Use ctx.store only inside handle(), while it runs."
        )


class PostgresStoreInTransaction:
    """``append``, ``find_command`` and stream reads of a ``PostgresEventStore`` on a
    connection inside a read model's transaction (``ctx.store`` in a handler)."""

    def __init__(
        self, store: PostgresEventStore, conn: psycopg.Connection[Any], projection: str
    ) -> None:
        self._store = store
        self._conn: psycopg.Connection[Any] | None = conn
        self._projection = projection
        self.last_position = 0

    @property
    def path(self) -> str:
        return self._store.path

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise TransactionEndedError(self._projection)
        return self._conn

    def end(self, *, committed: bool) -> None:
        self._conn = None
        last, self.last_position = self.last_position, 0
        if committed and last:
            self._store.notify_commit(last)

    def append(
        self,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> AppendResult:
        result, last = self._store.append_on(
            self._connection(),
            aggregate_id,
            aggregate_type,
            expected_version,
            events,
            command_id=command_id,
            command_ttl=command_ttl,
        )
        self.last_position = max(self.last_position, last)
        return result

    def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """Several aggregates at once, inside the batch's transaction (a ``UnitOfWork`` on
        ``ctx.store`` commits with the batch and its checkpoint), as on SQLite."""
        result, last = self._store.append_many_on(
            self._connection(), appends, command_id=command_id, command_ttl=command_ttl
        )
        self.last_position = max(self.last_position, last)
        return result

    def find_command(self, command_id: str, aggregate_id: str) -> AppendResult | None:
        named = (("command_id", command_id), ("aggregate_id", aggregate_id))
        check_texts(self.path, "find_command", named)
        return self._store._find_command(
            self._connection(), command_id, aggregate_id, time.time_ns() // 1000
        )

    def stream_version(self, aggregate_id: str) -> int:
        check_text(self.path, "stream_version", "aggregate_id", aggregate_id)
        row = (
            self._connection()
            .execute("SELECT MAX(version) FROM events WHERE aggregate_id = %s", (aggregate_id,))
            .fetchone()
        )
        return int(row[0] or 0) if row else 0

    def load_stream(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[Event]:
        check_text(self.path, "load_stream", "aggregate_id", aggregate_id)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = %s AND version > %s"
        params: list[object] = [aggregate_id, after_version]
        if up_to_version is not None:
            sql += " AND version <= %s"
            params.append(up_to_version)
        rows = self._connection().execute(sql + " ORDER BY version", params)
        return [Event(*r) for r in rows]

    def head_position(self) -> int:
        row = self._connection().execute("SELECT MAX(position) FROM events").fetchone()
        return int(row[0] or 0) if row else 0


_ENDS = (
    "a COMMIT or ROLLBACK statement on ctx.connection ends it, and every statement after "
    "it then commits on its own, apart from the checkpoint"
)


class CaughtDatabaseError(EventStoreError):
    """A handler caught a PostgreSQL error and returned: the error aborted the transaction."""

    def __init__(self, projection: str, position: int) -> None:
        self.projection = projection
        self.position = position
        where = f"handler at position {position}" if position else "reset()"
        super().__init__(
            f"projection {projection!r}'s {where} caught a database error and went on, but on "
            "PostgreSQL a failed statement aborts the whole transaction (unlike SQLite, where "
            "it undoes only itself), so the batch cannot be committed: it was rolled back. "
            "Run a statement that may fail inside a savepoint, "
            "`with ctx.connection.transaction(): ctx.connection.execute(...)`, or avoid the "
            "error (INSERT ... ON CONFLICT DO NOTHING), then call resume() to retry this event"
        )


class _Checked:
    """A projection whose handler (and reset) is followed by a look at the transaction.

    After each call the connection's transaction must still be open and usable: a
    handler that ended it (COMMIT) raises ``HandlerEndedTransactionError`` at its
    event; one that caught a database error and returned, ``CaughtDatabaseError``.
    Reading ``transaction_status`` costs no round trip.
    """

    def __init__(self, projection: Projection, conn: psycopg.Connection[Any]) -> None:
        self.name = projection.name
        self._projection = projection
        self._conn = conn

    def _check(self, position: int, cause: BaseException | None = None) -> None:
        state = self._conn.info.transaction_status
        if state is TransactionStatus.IDLE:
            raise HandlerEndedTransactionError(
                self.name, position, None, True, how=_ENDS
            ) from cause
        if state is TransactionStatus.INERROR and cause is None:
            raise CaughtDatabaseError(self.name, position)

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        try:
            self._projection.handle(event, ctx)
        except Exception as exc:
            self._check(event.position, exc)
            raise
        self._check(event.position)

    def reset(self, ctx: ProjectionContext) -> None:
        try:
            self._projection.reset(ctx)
        except Exception as exc:
            self._check(0, exc)
            raise
        self._check(0)


class PostgresReadModel:
    """A read model in PostgreSQL for the projection runner (the ``ReadModel`` port).

    ``target`` is a ``PostgresEventStore`` (the read model's tables live in its
    schema and handlers may append through ``ctx.store`` atomically with the
    batch) or a DSN (a database of its own; ``schema`` names where its tables
    go). ``reset(ctx)`` runs before the first event and before each rebuild,
    in the transaction that sets the checkpoint to 0: create or empty your
    tables there.
    """

    def __init__(self, target: PostgresEventStore | str, *, schema: str = "eventstore") -> None:
        self._store: PostgresEventStore | None = None
        if isinstance(target, PostgresEventStore):
            self._store = target
            self._db = target
            self._owns_db = False
        else:
            # A store object in the other database holds the checkpoint tables and the pool.
            self._db = PostgresEventStore(target, schema=schema, pool_size=4)
            self._owns_db = True
        self.path = self._db.path

    def close(self) -> None:
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> PostgresReadModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresReadModel({self.path!r})"

    @contextmanager
    def reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for queries on the read model (its committed state)."""
        with self._reading() as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """The database's connection; its own database closed says "read model"."""
        try:
            with self._db.reading() as conn:
                yield conn
        except StoreClosedError as exc:
            if not self._owns_db or isinstance(exc, ReadModelClosedError):
                raise
            raise ReadModelClosedError(self.path, "PostgresReadModel") from exc

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._reading() as conn, conn.transaction():
            yield conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a query on the read model, for notebooks and tests."""
        with self._reading() as conn:
            return conn.execute(sql.encode(), params).fetchall()

    def _check_name(self, where: str, name: str) -> None:
        check_text(self.path, where, "projection name", name)

    def load_checkpoint(self, name: str) -> int:
        self._check_name("load_checkpoint", name)
        with self._reading() as conn:
            return read_progress(conn, name)[0]

    def load_scanned_position(self, name: str) -> int:
        self._check_name("load_scanned_position", name)
        with self._reading() as conn:
            return read_progress(conn, name)[1]

    def save_scanned_position(self, name: str, after_position: int, scanned_to: int) -> int:
        self._check_name("save_scanned_position", name)
        with self._transaction() as conn:
            conn.execute("SELECT 1 FROM projection_checkpoints WHERE name = %s FOR UPDATE", (name,))
            checkpoint, stored = read_progress(conn, name)
            if stored != after_position or scanned_to <= stored:
                return stored
            write_checkpoint(conn, name, checkpoint, scanned_to)
            return scanned_to

    def prepare(self, projection: Projection) -> int:
        name = projection.name
        self._check_name("prepare", name)
        with self._transaction() as conn:
            self._lock(conn, name)
            row = conn.execute(
                "SELECT position FROM projection_checkpoints WHERE name = %s", (name,)
            ).fetchone()
            if row is not None:
                return int(row[0])
            _Checked(projection, conn).reset(ProjectionContext(name, 0, conn))
            write_checkpoint(conn, name, 0)
            return 0

    def reset(self, projection: Projection) -> None:
        name = projection.name
        self._check_name("reset", name)
        with self._transaction() as conn:
            self._lock(conn, name)
            _Checked(projection, conn).reset(ProjectionContext(name, 0, conn))
            write_checkpoint(conn, name, 0)
            conn.execute("DELETE FROM projection_dead_letters WHERE projection = %s", (name,))

    @staticmethod
    def _lock(conn: psycopg.Connection[Any], name: str) -> None:
        """Serialise the transactions of one projection (two runners racing)."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"projection:{name}",))

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
        self._check_name("apply", name)
        ctx = ProjectionContext(name)
        outcome = BatchOutcome(checkpoint=after_position, scanned_position=after_position)
        pending = list(events)
        after = after_position
        cut = len(pending)
        set_aside: ProjectionFailure | None = None
        failure: ProjectionFailure | None = None
        first = True
        while True:
            complete = failure is None and cut + (set_aside is not None) == len(pending)
            appends: PostgresStoreInTransaction | None = None
            committed = False
            try:
                with self._transaction() as conn:
                    self._lock(conn, name)
                    if self._store is not None:
                        ctx.store = appends = PostgresStoreInTransaction(self._store, conn, name)
                    stored_checkpoint, stored = read_progress(conn, name)
                    if first:
                        outcome.skipped = sum(1 for e in pending if e.position <= stored)
                        first = False
                    if stored < after:
                        outcome.checkpoint, outcome.scanned_position = stored_checkpoint, stored
                        return outcome
                    ctx.connection = conn
                    marked = (
                        self._store.running_projection(name)
                        if self._store is not None
                        else contextlib.nullcontext()
                    )
                    with marked:
                        checked = _Checked(projection, conn)
                        handled = handle_events(checked, pending[:cut], ctx, stored)
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
                cut = failed.index
                if dead_letter:
                    set_aside, failure = failed.failure, None
                else:
                    set_aside, failure = None, failed.failure
                continue
            finally:
                ctx.connection = None
                if appends is not None:
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

    def dead_letters(self, name: str) -> list[DeadLetter]:
        self._check_name("dead_letters", name)
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT projection, position, event_id, event_type, aggregate_id, error_type, "
                "message, traceback, failed_at FROM projection_dead_letters "
                "WHERE projection = %s ORDER BY position",
                (name,),
            ).fetchall()
        return [
            ProjectionFailure(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], timestamp_from_micros(r[8])
            )
            for r in rows
        ]


def _dead_letter_row(f: ProjectionFailure) -> tuple[object, ...]:
    # A handler's error may quote anything, a NUL byte too, which PostgreSQL text cannot
    # hold: written as the escape \x00, the failure is still set aside.
    return (
        f.projection,
        f.position,
        f.event_id,
        f.event_type,
        f.aggregate_id,
        _printable(f.error_type),
        _printable(f.message),
        _printable(f.traceback),
        time.time_ns() // 1000,
    )


def _printable(text: str) -> str:
    return text.replace("\x00", "\\x00")
