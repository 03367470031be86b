"""The SQLite event store: the embedded default (DESIGN decisions 5, 6, 7)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from ..core.arguments import (
    MAX_INTEGER,
    check_command_id,
    check_count,
    check_lookup_id,
    check_moment,
    check_position,
    check_stream_read,
    checked_append,
    command_expiry,
    event_type_names,
)
from ..core.commands import result_of_command_record
from ..core.constraints import ConstraintOp, apply_constraints
from ..core.errors import (
    COPY_MARK,
    ConcurrencyError,
    CorruptDatabaseError,
    DuplicateEventIdError,
    EventStoreError,
    IntegerRangeError,
    InterruptedCopyError,
    PayloadTooLargeError,
    StoreBusyError,
    StoreClosedError,
    UniqueConstraintError,
    redact_url,
)
from ..core.events import (
    Event,
    NewEvent,
    encode_constraints,
    micros_from_timestamp,
    quote_json,
    timestamp_from_micros,
)
from ..core.follow import DEFAULT_POLL_INTERVAL, Subscription, wake_on_close
from ..core.ids import deterministic_event_id
from ..core.ports import (
    DEFAULT_COMMAND_TTL,
    AppendResult,
    Page,
    ProcessedCommand,
    append_async_default,
    append_many_async_default,
)
from ..core.units import (
    StreamAppend,
    UnitResult,
    apply_unit_constraints,
    check_unit,
    unit_json,
)
from ..core.upcasting import Upcasters
from .checkpoints import SQLiteCheckpoints
from .connections import DEFAULT_CHECKPOINT_PAGES, ConnectionPool, ConnectionSettings
from .group_commit import GroupCommitter, GroupTransaction, Member, UnitMember, own_copy
from .schema import migrate
from .snapshots import SQLiteSnapshots

# Column order matches Event.__init__, so rows become events with Event(*row).
EVENT_COLUMNS = (
    "event_id, aggregate_id, aggregate_type, event_type, version, position, timestamp, "
    "data, metadata, constraints"
)
_INSERT_EVENT = (
    "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
    "timestamp, data, metadata, constraints) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_COMMAND = (
    "INSERT OR REPLACE INTO processed_commands "
    "(command_id, aggregate_id, event_ids, processed_at, expires_at) VALUES (?, ?, ?, ?, ?)"
)
_COMMAND_RECORD = (
    "SELECT event_ids, processed_at, expires_at, aggregate_id, unit FROM processed_commands "
    "WHERE command_id = ?"
)
_INSERT_UNIT_COMMAND = (
    "INSERT OR REPLACE INTO processed_commands "
    "(command_id, aggregate_id, event_ids, processed_at, expires_at, unit) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_STREAM_VERSION = "SELECT MAX(version) FROM events WHERE aggregate_id = ?"
_STREAM_PAYLOADS = (
    "SELECT event_type, version, data FROM events WHERE aggregate_id = ? AND version > ? "
    "ORDER BY version"
)
_STREAM_PAYLOADS_UP_TO = (
    "SELECT event_type, version, data FROM events WHERE aggregate_id = ? AND version > ? "
    "AND version <= ? ORDER BY version"
)
# Both of the above in one round trip: one row, the record's columns NULL when absent.
_COMMAND_AND_VERSION = (
    "SELECT (SELECT MAX(version) FROM events WHERE aggregate_id = ?), "
    "c.event_ids, c.processed_at, c.expires_at, c.aggregate_id, c.unit "
    "FROM (SELECT 1) LEFT JOIN processed_commands AS c ON c.command_id = ?"
)
_CONSTRAINT_OWNER = "SELECT aggregate_id FROM unique_constraints WHERE index_name = ? AND value = ?"
_EXPIRY_SWEEP_CHANCE = 1 / 1_000
_EXPIRY_SWEEP_BATCH = 5_000
# The encoder json.dumps(x, separators=(",", ":")) would build on every call, built once.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode

CommitListener = Callable[[int], None]


# SQLite's primary result codes for a lock held elsewhere.


class _ConstraintTable:
    """``core.constraints.ConstraintTable`` in this store's statements, on ``conn``."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def owner(self, index: str, value: str) -> str | None:
        row = self.conn.execute(_CONSTRAINT_OWNER, (index, value)).fetchone()
        return row[0] if row else None

    def claim(self, index: str, value: str, aggregate_id: str) -> None:
        self.conn.execute(
            "INSERT INTO unique_constraints (index_name, value, aggregate_id) VALUES (?, ?, ?)",
            (index, value, aggregate_id),
        )

    def release(self, index: str, value: str) -> None:
        self.conn.execute(
            "DELETE FROM unique_constraints WHERE index_name = ? AND value = ?",
            (index, value),
        )


def _stream_version(conn: sqlite3.Connection, aggregate_id: str) -> int:
    found = conn.execute(_STREAM_VERSION, (aggregate_id,)).fetchone()
    return int((found[0] if found else 0) or 0)


class _TransactionLost(Exception):
    """SQLite rolled back a group's whole transaction while one member ran."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


log = logging.getLogger("eventstore.sqlite")


class SQLiteEventStore(SQLiteSnapshots, SQLiteCheckpoints):
    """Event store, snapshot store, checkpoint store and command store on one SQLite file.

    ``path`` is a file (created when missing) or ``":memory:"`` for a private
    in-memory store for notebooks and tests in one process. ``synchronous``
    is ``"FULL"`` (durable, the default) or ``"NORMAL"`` (faster; the commits
    since the last WAL checkpoint may be lost on power failure, never on a
    process crash). ``checkpoint_pages`` is how many WAL pages SQLite writes
    before it checkpoints (and syncs) automatically: fewer bounds that loss at
    NORMAL and the WAL file's size (about 4 KiB a page) at the cost of throughput.

    ``path`` may also be a ``file:`` URI (``"file:/abs/events.db?mode=ro"`` opens
    it read-only). ``verify=True`` runs ``PRAGMA quick_check`` on open (it reads
    the whole file: seconds for a large one) and raises ``CorruptDatabaseError``
    naming the file when it is damaged. A file of another application is refused
    (``ForeignDatabaseError``), as is one written by a newer eventstore
    (``SchemaVersionError``); failures about the file (read-only, full, damaged,
    locked by another process for longer than ``busy_timeout`` seconds:
    ``StoreBusyError``) raise ``StorageError`` subclasses that name it. A file
    holding an ``eventstore copy`` that has not finished is refused
    (``InterruptedCopyError``, naming how to resume it); ``during_copy=True`` is
    for the copy itself.
    """

    #: How many threads usefully run this store's loads at once (read by
    #: ``Repository.load_async``). One: a load from a local file holds the GIL for most
    #: of its time, so a second thread only takes turns with the first and with the
    #: event loop; at 64 clients four threads gave 0.7x the rate of one and twice its
    #: p99 (docs/decisions.md, "SQLite loads run on one thread").
    load_threads = 1

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        checkpoint_pages: int = DEFAULT_CHECKPOINT_PAGES,
        verify: bool = False,
        group_commit: bool = True,
        during_copy: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self._db = ConnectionPool(self.path, synchronous, busy_timeout, checkpoint_pages)
        try:
            try:
                if verify:
                    self._verify()
                migrate(self._db.writer, self.path)
                if not during_copy:
                    self._refuse_an_unfinished_copy()
            except (sqlite3.Error, OverflowError) as exc:
                translated = self._db.translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
        except BaseException:
            self._db.close()
            raise
        self._listeners: list[CommitListener] = []
        self._listeners_lock = threading.Lock()
        self._sweep_cursor = ""
        self._group = GroupCommitter(self) if group_commit else None

    @property
    def group_commit(self) -> bool:
        """Whether appends are written in groups (see the class docstring)."""
        return self._group is not None

    def _refuse_an_unfinished_copy(self) -> None:
        """``InterruptedCopyError`` when ``eventstore copy`` into this file has not finished
        (its mark table is still there): appends would mix with the rows still to come, and
        the copy could no longer resume or verify. ``during_copy=True`` is for the copy."""
        conn = self._db.writer
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (COPY_MARK,)
        ).fetchone()
        if found is None:
            return
        source = conn.execute(f"SELECT source FROM {COPY_MARK} LIMIT 1").fetchone()
        head = conn.execute("SELECT MAX(position) FROM events").fetchone()
        raise InterruptedCopyError(
            self.path, redact_url(str(source[0] if source else "?")), int(head[0] or 0)
        )

    def _verify(self) -> None:
        rows = self._db.writer.execute("PRAGMA quick_check").fetchall()
        problems = [str(row[0]) for row in rows]
        if problems != ["ok"]:
            shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
            raise CorruptDatabaseError(self.path, f"quick_check found: {shown}")

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Close the store; appends still queued for a group get ``StoreClosedError``.

        A group being written finishes first; reads in flight are interrupted
        (see eventstore/sqlite/connections.py). Subscriptions (``follow``) and other
        waiters on this store's commits are woken at once, so they end with
        ``StoreClosedError`` instead of waiting out their ``poll_interval``.
        """
        if self._group is not None:
            self._group.close()
        self._db.close()
        with self._listeners_lock:
            listeners = list(self._listeners)
        wake_on_close(listeners)

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> SQLiteEventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._db.synchronous
        return f"SQLiteEventStore({self.path!r}, {state})"

    @property
    def synchronous(self) -> str:
        return self._db.synchronous

    def connection_settings(self) -> list[ConnectionSettings]:
        """The pragmas of the writer and of every reader connection open now, read back from each.

        A thread's reader connection (and its entry here) goes when the thread ends.
        """
        return self._db.settings

    # -- commit notifications -------------------------------------------------------
    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(head_position)`` after each commit made through this store object.

        Commits from other processes are not seen here: followers poll for those.
        """
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self, head: int) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(head)
            except Exception:
                # The commit stands: raising here would report a stored command as failed.
                log.exception("commit listener %r failed at position %d", listener, head)

    # -- writing -----------------------------------------------------------------------
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
        append = checked_append(
            self.path,
            aggregate_id,
            aggregate_type,
            expected_version,
            events,
            command_id,
            command_ttl,
        )
        group, lone = self._group, None
        if group is not None and not self._db.owns_write_lock():
            if not group.lead_alone():
                return group.append(Member(*append))
            lone = group  # nobody writing, nobody expected: written at once, as ungrouped
        try:
            return self._append_now(*append)
        finally:
            if lone is not None:
                lone.end_alone()

    def _append_now(
        self,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        encoded: Sequence[tuple[str | None, str | None]],
        command_id: str | None,
        command_ttl: timedelta,
    ) -> AppendResult:
        """One append in a transaction of its own: without group commit, for a lone
        caller (``GroupCommitter.lead_alone``), or on a thread that holds the write lock
        (queued, it would wait for itself; here the transaction within a transaction is
        refused: read-model handlers append through ``ctx.store`` instead)."""
        try:
            with self._db.transaction() as conn:
                result, last = self._append_on(
                    conn,
                    aggregate_id,
                    aggregate_type,
                    expected_version,
                    events,
                    encoded,
                    command_id,
                    command_ttl,
                )
        except (ConcurrencyError, UniqueConstraintError, sqlite3.IntegrityError) as exc:
            # A retry of a command whose record expired fails one of the checks (its
            # events, or their deterministic ids, are stored). Looking for those ids only
            # here keeps a lookup off every successful append; the answer is the same as
            # looking first, because nothing was written.
            if command_id and events:
                known = self.find_command(command_id, aggregate_id)
                if known is not None:
                    return known
            if isinstance(exc, sqlite3.IntegrityError):
                raise self._integrity_error(exc, aggregate_id, expected_version, events) from exc
            raise
        except PayloadTooLargeError as exc:
            # Name the aggregate and the largest value: the pool knows neither.
            size = max(
                max(len(e.data), len(meta or ""), len(cons or ""))
                for e, (meta, cons) in zip(events, encoded, strict=True)
            )
            raise PayloadTooLargeError(self.path, exc.limit, size, aggregate_id) from exc.__cause__
        if result.already_processed:
            return result
        if command_id and random.random() < _EXPIRY_SWEEP_CHANCE:
            self._sweep_after_commit()
        if last:
            self._notify(last)
        return result

    async def append_async(
        self,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> AppendResult:
        """``append`` for ``async`` callers: the same answers, the event loop never waits on
        SQLite. With group commit it joins the next group, written on a thread.

        On a thread that holds the write lock (an event loop run inside a read model's
        batch) it is ``append``, run here: queued, or on a worker thread, it would wait
        for that thread's own lock for ever."""
        if self._db.owns_write_lock():
            return self.append(
                aggregate_id,
                aggregate_type,
                expected_version,
                events,
                command_id=command_id,
                command_ttl=command_ttl,
            )
        if self._group is None:
            return await append_async_default(
                self,
                aggregate_id,
                aggregate_type,
                expected_version,
                events,
                command_id=command_id,
                command_ttl=command_ttl,
            )
        member = Member(
            *checked_append(
                self.path,
                aggregate_id,
                aggregate_type,
                expected_version,
                events,
                command_id,
                command_ttl,
            )
        )
        return await self._group.append_async(member)

    def write_group(self, batch: Sequence[Member]) -> int:
        """Write ``batch`` in one transaction, each member in its own savepoint.

        Sets each member's result or error (nothing is answered before COMMIT: a
        failed COMMIT fails every member, each with its own copy of the error). Returns
        the last position committed (0: none). Called by the group's leader; see
        eventstore/sqlite/group_commit.py.

        Interrupted (``KeyboardInterrupt``, or a bug), it rolls back what is open and
        raises: the answers given inside the rolled-back transaction are then void
        (``Member.settled``), the rest stand.
        """
        db = self._db
        try:
            db.acquire_writer()
        except StoreBusyError as busy:
            for member in batch:
                member.error = own_copy(busy)
            return 0
        try:
            if db.closed:
                for member in batch:
                    member.error = StoreClosedError(self.path)
                return 0
            conn = db.writer
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except (sqlite3.Error, OverflowError) as exc:
                    error = self._translated(exc)
                    for member in batch:
                        member.error = own_copy(error)
                    return 0
                return self._write_members(conn, batch, GroupTransaction())
            except BaseException:
                # Not an answer (KeyboardInterrupt, a bug): leave no transaction open, also
                # when it came right after BEGIN.
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                raise
        finally:
            db.write_lock.release()

    def _translated(self, exc: BaseException) -> BaseException:
        """The store's error for a sqlite3 error, with it as ``__cause__`` (decision 25)."""
        error = self._db.translate(exc)
        if error is not exc:
            error.__cause__ = exc
        return error

    def _write_members(
        self, conn: sqlite3.Connection, batch: Sequence[Member], txn: GroupTransaction
    ) -> int:
        """The members of ``batch`` in the open transaction ``txn``, then COMMIT.

        Each answer is given inside ``txn`` (``member.commit``) and stands once it has
        committed. An answer that stands whatever happens (an error after a rollback)
        is set first and its ``commit`` cleared after, so an interrupt between the two
        leaves it void, never standing for an append that was rolled back.
        """
        if len(batch) == 1:
            return self._write_alone(conn, batch[0], txn)
        last = 0
        for index, member in enumerate(batch):
            try:
                last = max(last, self._write_member(conn, member, txn))
            except _TransactionLost as lost:
                # SQLite rolled the whole transaction back (full, I/O error, busy,
                # interrupted): this member fails; every other one is retried alone.
                member.error = lost.error
                member.commit = None
                last = 0
                for other in [*batch[:index], *batch[index + 1 :]]:
                    other.unanswer()
                    last = max(last, self.write_group([other]))
                return last
        try:
            conn.execute("COMMIT")
        except (sqlite3.Error, OverflowError) as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            error = self._translated(exc)
            for member in batch:
                member.error = own_copy(error)
                member.result = None
                member.commit = None
            return 0
        except BaseException:
            txn.committed = True  # raised as COMMIT returned (an interrupt): it committed
            raise
        txn.committed = True
        return last

    def _write_alone(self, conn: sqlite3.Connection, member: Member, txn: GroupTransaction) -> int:
        """A group of one (a lone caller): no savepoint, so it costs what ``append`` did.

        On a failure the transaction is rolled back whole and the outcome is read
        on the writer (still under the write lock) as it stands committed.
        """
        member.commit = txn
        try:
            result, last = self._member_body(conn, member)
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            try:
                member.result = self._member_outcome(conn, member, exc)
            except Exception as error:
                member.error = error
            member.commit = None  # read after the rollback: it stands
            return 0
        member.result = result
        try:
            conn.execute("COMMIT")
        except (sqlite3.Error, OverflowError) as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            member.error = self._translated(exc)
            member.result = None
            member.commit = None
            return 0
        except BaseException:
            txn.committed = True  # raised as COMMIT returned (an interrupt): it committed
            raise
        txn.committed = True
        return last

    def _write_member(self, conn: sqlite3.Connection, member: Member, txn: GroupTransaction) -> int:
        """One member inside the group's transaction; a failing one is undone to its savepoint."""
        member.commit = txn
        conn.execute("SAVEPOINT eventstore_member")
        try:
            result, last = self._member_body(conn, member)
        except Exception as exc:
            try:
                if not conn.in_transaction:
                    raise _TransactionLost(self._db.translate(exc))
                conn.execute("ROLLBACK TO eventstore_member")
                conn.execute("RELEASE eventstore_member")
            except sqlite3.Error as undo:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                raise _TransactionLost(self._db.translate(exc)) from undo
            try:
                member.result = self._member_outcome(conn, member, exc)
            except Exception as error:
                member.error = error
            return 0
        conn.execute("RELEASE eventstore_member")
        member.result = result
        return last

    def _member_body(self, conn: sqlite3.Connection, member: Member) -> tuple[Any, int]:
        """A member's writes: one append, or a unit's streams."""
        if isinstance(member, UnitMember):
            return self._append_many_on(conn, member.items, member.command_id, member.command_ttl)
        return self._append_on(
            conn,
            member.aggregate_id,
            member.aggregate_type,
            member.expected_version,
            member.events,
            member.encoded,
            member.command_id,
            member.command_ttl,
        )

    def _unit_outcome(self, conn: sqlite3.Connection, member: UnitMember, exc: Exception) -> Any:
        """The answer of a unit whose writes failed: a retry whose record expired, or the
        error (as ``append_many`` gives it)."""
        if member.command_id and isinstance(
            exc, (ConcurrencyError, UniqueConstraintError, DuplicateEventIdError)
        ):
            known = self._unit_by_event_ids(conn, member.items, member.command_id)
            if known is not None:
                return known
        if isinstance(exc, (sqlite3.Error, OverflowError)):
            raise self._db.translate(exc) from exc
        raise exc

    def _member_outcome(
        self, conn: sqlite3.Connection, member: Member, exc: Exception
    ) -> AppendResult:
        """The answer of a member whose append failed: a known command's result, or an error.

        Read on the writer inside the group's transaction, so the group's own
        uncommitted rows count (a duplicate of a command earlier in the group).
        """
        if isinstance(member, UnitMember):
            return self._unit_outcome(conn, member, exc)  # type: ignore[no-any-return]
        aggregate_id, events = member.aggregate_id, member.events
        if isinstance(exc, (ConcurrencyError, UniqueConstraintError, sqlite3.IntegrityError)):
            if member.command_id and events:
                known = self._find_command(
                    conn, member.command_id, aggregate_id, time.time_ns() // 1000
                )
                if known is not None:
                    return known
            if isinstance(exc, sqlite3.IntegrityError):
                raise self._integrity_error(
                    exc, aggregate_id, member.expected_version, events, conn
                ) from exc
            raise exc
        translated = (
            self._db.translate(exc) if isinstance(exc, (sqlite3.Error, OverflowError)) else exc
        )
        if isinstance(translated, PayloadTooLargeError):
            size = max(
                max(len(e.data), len(meta or ""), len(cons or ""))
                for e, (meta, cons) in zip(events, member.encoded, strict=True)
            )
            raise PayloadTooLargeError(self.path, translated.limit, size, aggregate_id) from exc
        if translated is exc:
            raise exc
        raise translated from exc

    def append_on(
        self,
        conn: sqlite3.Connection,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> tuple[AppendResult, int]:
        """``append`` on ``conn``, the store's writer already inside a transaction.

        For a read model in the store's file (``SQLiteReadModel(store)``): the
        append commits or rolls back with that transaction. Every check of
        ``append`` runs; a failing append is undone (to a savepoint) and raises
        as ``append`` would, leaving the rest of the transaction as it was.
        Returns the result and the last position written (0 when none): commit
        listeners are the caller's to call (``notify_commit``) once it committed.
        """
        args = checked_append(
            self.path,
            aggregate_id,
            aggregate_type,
            expected_version,
            events,
            command_id,
            command_ttl,
        )
        conn.execute("SAVEPOINT eventstore_append")
        try:
            result = self._append_on(conn, *args)
        except BaseException as exc:
            conn.execute("ROLLBACK TO eventstore_append")
            conn.execute("RELEASE eventstore_append")
            if not isinstance(
                exc, (ConcurrencyError, UniqueConstraintError, sqlite3.IntegrityError)
            ):
                raise
            if command_id and events:  # as in append: a retry whose record expired
                known = self._find_command(conn, command_id, aggregate_id, time.time_ns() // 1000)
                if known is not None:
                    return known, 0
            if isinstance(exc, sqlite3.IntegrityError):
                raise self._integrity_error(
                    exc, aggregate_id, expected_version, events, conn
                ) from exc
            raise
        conn.execute("RELEASE eventstore_append")
        return result

    # -- units: several aggregates in one transaction ------------------------------------------
    def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """Append to several streams in one transaction, all or nothing.

        Each ``StreamAppend`` has its own expected version; a conflict or a
        constraint on any stream writes nothing in any. With ``command_id`` the
        unit is one command: a retry returns each aggregate's original events
        (``UnitResult.already_processed``), before any check; the id sent with an
        aggregate outside the original unit raises ``CommandIdConflictError``.
        """
        items = check_unit(self.path, appends, command_id, command_ttl)
        group, lone = self._group, None
        if group is not None and not self._db.owns_write_lock():
            if not group.lead_alone():
                # One member of the next group: it shares the group's transaction and fsync.
                answer: UnitResult = group.append(  # type: ignore[assignment]
                    UnitMember(items, command_id, command_ttl)
                )
                return answer
            lone = group
        try:
            return self._append_many_now(items, command_id, command_ttl)
        finally:
            if lone is not None:
                lone.end_alone()

    def _append_many_now(
        self, items: Sequence[StreamAppend], command_id: str | None, command_ttl: timedelta
    ) -> UnitResult:
        """One unit in a transaction of its own (see ``_append_now``)."""
        try:
            with self._db.transaction() as conn:
                result, last = self._append_many_on(conn, items, command_id, command_ttl)
        except (ConcurrencyError, UniqueConstraintError, DuplicateEventIdError):
            if command_id:  # a retry whose record expired: recognised by its event ids
                with self._db.reading() as conn:
                    known = self._unit_by_event_ids(conn, items, command_id)
                if known is not None:
                    return known
            raise
        if command_id and not result.already_processed and random.random() < _EXPIRY_SWEEP_CHANCE:
            self._sweep_after_commit()  # as append does
        if last:
            self._notify(last)
        return result

    async def append_many_async(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """``append_many`` for ``async`` callers: with group commit it joins the next group,
        written on a thread; else ``append_many`` runs on a worker thread. On a thread that
        holds the write lock it is ``append_many``, run here (see ``append_async``)."""
        if self._db.owns_write_lock():
            return self.append_many(appends, command_id=command_id, command_ttl=command_ttl)
        if self._group is not None:
            items = check_unit(self.path, appends, command_id, command_ttl)
            answer: UnitResult = await self._group.append_async(  # type: ignore[assignment]
                UnitMember(items, command_id, command_ttl)
            )
            return answer
        return await append_many_async_default(
            self, appends, command_id=command_id, command_ttl=command_ttl
        )

    def append_many_on(
        self,
        conn: sqlite3.Connection,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> tuple[UnitResult, int]:
        """``append_many`` on the writer already inside a transaction (see ``append_on``)."""
        items = check_unit(self.path, appends, command_id, command_ttl)
        conn.execute("SAVEPOINT eventstore_unit")
        try:
            result = self._append_many_on(conn, items, command_id, command_ttl)
        except BaseException as exc:
            conn.execute("ROLLBACK TO eventstore_unit")
            conn.execute("RELEASE eventstore_unit")
            if command_id and isinstance(
                exc, (ConcurrencyError, UniqueConstraintError, DuplicateEventIdError)
            ):
                known = self._unit_by_event_ids(conn, items, command_id)
                if known is not None:
                    return known, 0
            raise
        conn.execute("RELEASE eventstore_unit")
        return result

    def _append_many_on(
        self,
        conn: sqlite3.Connection,
        items: Sequence[StreamAppend],
        command_id: str | None,
        command_ttl: timedelta,
    ) -> tuple[UnitResult, int]:
        now = time.time_ns() // 1000
        if command_id:
            row = conn.execute(_COMMAND_RECORD, (command_id,)).fetchone()
            if row is not None and row[2] > now:
                # A known command: every aggregate's part of it, or a conflict for an
                # aggregate outside it (checked before any version or constraint).
                parts = tuple(
                    (
                        item.aggregate_id,
                        self._result_of_record(conn, row, command_id, item.aggregate_id, now)
                        or AppendResult((), True, timestamp_from_micros(row[1])),
                    )
                    for item in items
                )
                return UnitResult(parts, True, timestamp_from_micros(row[1])), 0
        results: list[tuple[str, AppendResult]] = []
        last = 0
        apply_unit_constraints(
            items, _ConstraintTable(conn), lambda aggregate_id: _stream_version(conn, aggregate_id)
        )
        for item in items:
            encoded = [
                (e.metadata.to_json(), encode_constraints(e.constraints)) for e in item.events
            ]
            try:
                result, position = self._append_on(
                    conn,
                    item.aggregate_id,
                    item.aggregate_type,
                    item.expected_version,
                    item.events,
                    encoded,
                    None,
                    command_ttl,
                    False,
                )
            except sqlite3.IntegrityError as exc:
                raise self._integrity_error(
                    exc, item.aggregate_id, item.expected_version, item.events, conn
                ) from exc
            results.append((item.aggregate_id, result))
            last = max(last, position)
        if command_id:
            expires = command_expiry(now, command_ttl)
            recorded = [(a, [e.event_id for e in r.events]) for a, r in results]
            conn.execute(
                _INSERT_UNIT_COMMAND,
                (
                    command_id,
                    recorded[0][0],
                    json.dumps(recorded[0][1]),
                    now,
                    expires,
                    unit_json(recorded),
                ),
            )
        return UnitResult(tuple(results), False, timestamp_from_micros(now)), last

    def _unit_by_event_ids(
        self, conn: sqlite3.Connection, items: Sequence[StreamAppend], command_id: str
    ) -> UnitResult | None:
        """A unit whose record expired, recognised by every aggregate's deterministic ids."""
        parts: list[tuple[str, AppendResult]] = []
        for item in items:
            if not item.events:
                parts.append((item.aggregate_id, AppendResult((), True)))
                continue
            own = self._find_by_event_ids(conn, command_id, item.aggregate_id)
            if own is None:
                return None
            parts.append((item.aggregate_id, own))
        if all(not r.events for _, r in parts):
            return None
        stamp = min(r.processed_at for _, r in parts if r.processed_at is not None)
        return UnitResult(tuple(parts), True, stamp)

    def notify_commit(self, head: int) -> None:
        """Tell this store's commit listeners about a commit made with ``append_on``."""
        if head:
            self._notify(head)

    def _append_on(
        self,
        conn: sqlite3.Connection,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        encoded: Sequence[tuple[str | None, str | None]],
        command_id: str | None,
        command_ttl: timedelta,
        constraints: bool = True,
    ) -> tuple[AppendResult, int]:
        """The body of an append, on ``conn`` inside a transaction: (result, last position)."""
        # Read the clock under the write lock, so timestamps follow positions.
        now = time.time_ns() // 1000
        rows = [
            (
                e.event_id,
                aggregate_id,
                aggregate_type,
                e.event_type,
                expected_version + i,
                now,
                e.data,
                meta,
                cons,
            )
            for i, (e, (meta, cons)) in enumerate(zip(events, encoded, strict=True), 1)
        ]
        last = 0
        if rows and command_id:
            # The command's record and the stream's version in one statement; the
            # record is still checked first. A command whose record expired is
            # recognised when a check below fails (see append's except clause).
            actual, *record = conn.execute(
                _COMMAND_AND_VERSION, (aggregate_id, command_id)
            ).fetchone()
            known = self._result_of_record(conn, record, command_id, aggregate_id, now)
            if known is not None:
                return known, 0
        elif rows:
            actual = conn.execute(_STREAM_VERSION, (aggregate_id,)).fetchone()[0]
        elif command_id:
            # A command that stores nothing never fails a check: look for it here.
            known = self._find_command(conn, command_id, aggregate_id, now)
            if known is not None:
                return known, 0
        if rows:
            actual = actual or 0
            if actual != expected_version:
                raise ConcurrencyError(aggregate_id, expected_version, actual)
            if constraints:  # a unit applies its own first (apply_unit_constraints)
                apply_constraints(_ConstraintTable(conn), aggregate_id, events)
            if len(rows) == 1:
                # The common single-event command: lastrowid saves a statement.
                last = conn.execute(_INSERT_EVENT, rows[0]).lastrowid or 0
            else:
                conn.executemany(_INSERT_EVENT, rows)
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        if command_id:
            expires = command_expiry(now, command_ttl)
            ids = "[" + ",".join([quote_json(e.event_id) for e in events]) + "]"
            conn.execute(_INSERT_COMMAND, (command_id, aggregate_id, ids, now, expires))
        first = last - len(rows) + 1
        stored = tuple(
            [
                Event(r[0], r[1], r[2], r[3], r[4], position, now, r[6], r[7], r[8])
                for position, r in enumerate(rows, first)
            ]
        )
        return AppendResult(stored, False, timestamp_from_micros(now)), last

    def _integrity_error(
        self,
        exc: sqlite3.IntegrityError,
        aggregate_id: str,
        expected: int,
        events: Sequence[NewEvent],
        conn: sqlite3.Connection | None = None,
    ) -> Exception:
        """The error of an append refused by an index; its facts read on ``conn`` (the writer
        inside the transaction) when given, else on a reader."""
        text = str(exc)
        if "events.aggregate_id, events.version" in text:
            if conn is not None:
                actual = int(conn.execute(_STREAM_VERSION, (aggregate_id,)).fetchone()[0] or 0)
            else:
                actual = self.stream_version(aggregate_id)
            return ConcurrencyError(aggregate_id, expected, actual)
        if "events.event_id" in text:
            wanted = [e.event_id for e in events]
            if conn is not None:
                stored = {event.event_id for event in self._events_by_id(conn, wanted)}
            else:
                with self._db.reading() as reader:
                    stored = {event.event_id for event in self._events_by_id(reader, wanted)}
            return DuplicateEventIdError(aggregate_id, [i for i in wanted if i in stored] or wanted)
        return EventStoreError(f"cannot append to aggregate {aggregate_id!r}: {text}")

    # -- commands ------------------------------------------------------------------------
    def _find_command_record(
        self, conn: sqlite3.Connection, command_id: str, aggregate_id: str, now: int
    ) -> AppendResult | None:
        row = conn.execute(_COMMAND_RECORD, (command_id,)).fetchone()
        return self._result_of_record(conn, row, command_id, aggregate_id, now)

    def _result_of_record(
        self,
        conn: sqlite3.Connection,
        row: Sequence[Any] | None,
        command_id: str,
        aggregate_id: str,
        now: int,
    ) -> AppendResult | None:
        """The original result from a command record, by the core's command-id rule."""
        return result_of_command_record(
            row,
            command_id,
            aggregate_id,
            now,
            lambda ids: self._events_by_id(conn, ids),
            lambda: self._find_by_event_ids(conn, command_id, aggregate_id),
            self.path,
        )

    def _find_command(
        self, conn: sqlite3.Connection, command_id: str, aggregate_id: str, now: int
    ) -> AppendResult | None:
        known = self._find_command_record(conn, command_id, aggregate_id, now)
        if known is not None:
            return known
        return self._find_by_event_ids(conn, command_id, aggregate_id)

    def _find_by_event_ids(
        self, conn: sqlite3.Connection, command_id: str, aggregate_id: str
    ) -> AppendResult | None:
        """The command's events on this aggregate, found by their deterministic ids."""
        events: list[Event] = []
        for index in itertools.count():
            found = self._events_by_id(
                conn, [deterministic_event_id(command_id, aggregate_id, index)]
            )
            if not found:
                break
            events.extend(found)
        if not events:
            return None
        return AppendResult(tuple(events), True, events[0].timestamp)

    @staticmethod
    def _events_by_id(conn: sqlite3.Connection, ids: Sequence[str]) -> tuple[Event, ...]:
        if not ids:
            return ()
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({marks}) ORDER BY position",
            list(ids),
        ).fetchall()
        return tuple(itertools.starmap(Event, rows))

    def find_command(self, command_id: str, aggregate_id: str) -> AppendResult | None:
        check_command_id("find_command", command_id)
        check_lookup_id("find_command", "aggregate_id", aggregate_id)
        with self._db.reading() as conn:
            return self._find_command(conn, command_id, aggregate_id, time.time_ns() // 1000)

    def processed_command(self, command_id: str) -> ProcessedCommand | None:
        check_command_id("processed_command", command_id)
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT command_id, aggregate_id, event_ids, processed_at, expires_at, unit "
                "FROM processed_commands WHERE command_id = ?",
                (command_id,),
            ).fetchone()
        if row is None:
            return None
        return ProcessedCommand(
            row[0],
            row[1],
            tuple(json.loads(row[2])),
            timestamp_from_micros(row[3]),
            timestamp_from_micros(row[4]),
            tuple((a, tuple(ids)) for a, ids in json.loads(row[5] or "[]")),
        )

    def _sweep_after_commit(self) -> None:
        # The command is stored: a failing sweep must not make it look failed.
        try:
            self.sweep_expired_commands()
        except StoreClosedError:
            pass  # closed between the commit and the sweep: the next store object sweeps
        except Exception:
            log.exception("sweeping expired command records of %r failed", self.path)

    def sweep_expired_commands(self, batch: int = _EXPIRY_SWEEP_BATCH) -> int:
        """Delete expired command records among the next ``batch`` records; returns how many.

        Bounded work, resumed where the last sweep stopped (wrapping at the end),
        so the command table needs no index on expiry: each command writes one
        B-tree less. The store calls it after about one command in a thousand
        (by chance, so that store objects opened per request sweep too).
        ``batch`` is an int >= 1.
        """
        check_count("sweep_expired_commands: batch", batch)
        batch = min(batch, MAX_INTEGER)
        now = time.time_ns() // 1000
        with self._db.transaction() as conn:
            # Counted and ended in SQL: the batch's keys never become Python objects.
            count, last = conn.execute(
                "SELECT count(*), max(command_id) FROM (SELECT command_id "
                "FROM processed_commands WHERE command_id > ? "
                "ORDER BY command_id LIMIT ?) AS batch",
                (self._sweep_cursor, batch),
            ).fetchone()
            if not count:
                self._sweep_cursor = ""
                return 0
            deleted = conn.execute(
                "DELETE FROM processed_commands WHERE command_id > ? AND command_id <= ? "
                "AND expires_at <= ?",
                (self._sweep_cursor, last, now),
            ).rowcount
            self._sweep_cursor = last if count == batch else ""
            return deleted

    def delete_expired_commands(self, now: datetime | None = None) -> int:
        """Delete command records past their TTL (as of ``now``); returns how many went.

        Retries of those commands are still recognised by their deterministic event ids.
        ``now`` is a datetime with a time zone, or None for the present.
        """
        if now is not None:
            check_moment("delete_expired_commands", "now", now)
        cutoff = time.time_ns() // 1000 if now is None else micros_from_timestamp(now)
        with self._db.transaction() as conn:
            return conn.execute(
                "DELETE FROM processed_commands WHERE expires_at <= ?", (cutoff,)
            ).rowcount

    # -- reading ---------------------------------------------------------------------------
    def load_stream(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[Event]:
        check_stream_read("load_stream", aggregate_id, after_version, up_to_version)
        if after_version > MAX_INTEGER:
            raise IntegerRangeError(self.path, "after_version", after_version)
        if up_to_version is not None and up_to_version > MAX_INTEGER:
            up_to_version = MAX_INTEGER  # every version is at or below it
        with self._db.reading() as conn:
            if up_to_version is None:
                cursor = conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = ? AND version > ? "
                    "ORDER BY version",
                    (aggregate_id, after_version),
                )
            else:
                cursor = conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = ? AND version > ? "
                    "AND version <= ? ORDER BY version",
                    (aggregate_id, after_version, up_to_version),
                )
            return list(itertools.starmap(Event, cursor))

    def load_stream_payloads(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[tuple[str, int, bytes]]:
        """``load_stream`` as ``(event_type, version, data)`` rows, no ``Event`` built.

        What a replay without upcasters needs (``Repository.load`` reads this way):
        three columns instead of ten cost well under half as much to fetch.
        """
        check_stream_read("load_stream_payloads", aggregate_id, after_version, up_to_version)
        if after_version > MAX_INTEGER:
            raise IntegerRangeError(self.path, "after_version", after_version)
        if up_to_version is not None and up_to_version > MAX_INTEGER:
            up_to_version = MAX_INTEGER
        with self._db.reading() as conn:
            if up_to_version is None:
                return conn.execute(_STREAM_PAYLOADS, (aggregate_id, after_version)).fetchall()
            return conn.execute(
                _STREAM_PAYLOADS_UP_TO, (aggregate_id, after_version, up_to_version)
            ).fetchall()

    def stream_version(self, aggregate_id: str) -> int:
        if type(aggregate_id) is not str or not aggregate_id.isascii():
            check_lookup_id("stream_version", "aggregate_id", aggregate_id)
        with self._db.reading() as conn:
            row = conn.execute(_STREAM_VERSION, (aggregate_id,)).fetchone()
        return int(row[0] or 0)

    def read_all(
        self,
        after_position: int = 0,
        *,
        limit: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> list[Event]:
        """Events with position > ``after_position`` in position order (never the one at it)."""
        check_position("after_position", after_position)
        event_types = event_type_names(event_types)
        if after_position > MAX_INTEGER:
            raise IntegerRangeError(self.path, "after_position", after_position)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ?"
        params: list[object] = [after_position]
        if event_types is not None:
            if not event_types:
                return []
            sql += f" AND event_type IN ({','.join('?' * len(event_types))})"
            params.extend(event_types)
        sql += " ORDER BY position"
        if limit is not None:
            check_count("limit", limit)
            limit = min(limit, MAX_INTEGER)  # no more rows than that exist
            sql += " LIMIT ?"
            params.append(limit)
        with self._db.reading() as conn:
            return list(itertools.starmap(Event, conn.execute(sql, params)))

    def read_page(
        self,
        after_position: int,
        *,
        limit: int,
        event_types: Sequence[str] | None = None,
    ) -> Page:
        """Up to ``limit`` events after ``after_position``, and how far this read scanned.

        The events and the head are read in one read transaction, so no commit
        slips between them: a filtered reader continues after ``scanned_to``
        without missing an event or rescanning the ones it skipped.
        """
        check_position("after_position", after_position)
        if after_position > MAX_INTEGER:
            raise IntegerRangeError(self.path, "after_position", after_position)
        event_types = event_type_names(event_types)
        check_count("limit", limit)
        limit = min(limit, MAX_INTEGER)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ?"
        params: list[object] = [after_position]
        if event_types is not None:
            sql += f" AND event_type IN ({','.join('?' * len(event_types))})"
            params.extend(event_types)
        sql += " ORDER BY position LIMIT ?"
        params.append(limit)
        with self._db.reading() as conn:
            own = not conn.in_transaction  # in memory, inside a handler's transaction: in it
            if own:
                conn.execute("BEGIN")
            try:
                events = list(itertools.starmap(Event, conn.execute(sql, params)))
                if len(events) < limit:
                    head = conn.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0
            finally:
                if own:
                    conn.execute("COMMIT")
        if len(events) == limit:
            return Page(events, events[-1].position)
        return Page(events, max(after_position, head))

    def iter_all(
        self,
        after_position: int = 0,
        *,
        event_types: Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[Event]:
        """All events after ``after_position``, read page by page (no long read transaction)."""
        check_count("page_size", page_size)
        event_types = event_type_names(event_types)  # read once: a generator is used up
        position = after_position
        while True:
            page = self.read_all(position, limit=page_size, event_types=event_types)
            yield from page
            if len(page) < page_size:
                return
            position = page[-1].position

    def head_position(self) -> int:
        with self._db.reading() as conn:
            row = conn.execute("SELECT MAX(position) FROM events").fetchone()
        return int(row[0] or 0)

    def follow(
        self,
        after_position: int = 0,
        *,
        event_types: Sequence[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        page_size: int = 1000,
        upcasters: Upcasters | None = None,
    ) -> Subscription:
        """Events after ``after_position`` as they commit: iterate with ``for`` or ``async for``.

        Commits through this store object wake the subscription at once; other
        processes' commits are found by polling every ``poll_interval`` seconds.
        Stop it with ``stop()`` or by leaving its ``with`` block (see core/follow.py).
        ``upcasters`` upcast each event before it is handed out.
        """
        return Subscription(
            self,
            after_position,
            event_types=event_types,
            poll_interval=poll_interval,
            page_size=page_size,
            upcasters=upcasters,
        )

    def count_events(self) -> int:
        with self._db.reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    # -- unique constraints -----------------------------------------------------------------
    def constraint_owner(self, index: str, value: str) -> str | None:
        if type(index) is not str or type(value) is not str or not (index + value).isascii():
            check_lookup_id("constraint_owner", "index", index)
            check_lookup_id("constraint_owner", "value", value)
        with self._db.reading() as conn:
            row = conn.execute(_CONSTRAINT_OWNER, (index, value)).fetchone()
        return row[0] if row else None

    def rebuild_constraints(self) -> int:
        """Recompute the unique-constraint table from the claims and releases in the log."""
        with self._db.transaction() as conn:
            owners: dict[tuple[str, str], str] = {}
            rows = conn.execute(
                "SELECT aggregate_id, constraints FROM events WHERE constraints IS NOT NULL "
                "ORDER BY position"
            )
            for aggregate_id, raw in rows:
                for index, value, op in json.loads(raw):
                    if op == ConstraintOp.CLAIM.value:
                        owners[(index, value)] = aggregate_id
                    elif owners.get((index, value)) == aggregate_id:
                        del owners[(index, value)]
            conn.execute("DELETE FROM unique_constraints")
            conn.executemany(
                "INSERT INTO unique_constraints (index_name, value, aggregate_id) VALUES (?, ?, ?)",
                [(i, v, a) for (i, v), a in owners.items()],
            )
            return len(owners)
