"""The PostgreSQL event store: one log for several application servers.

Positions are single integers in commit order. PostgreSQL sequences are not
commit-ordered, so every write transaction takes a transaction-level advisory
lock (the *position lock*) before it reads the clock or draws a position, and
holds it until it commits: positions then become visible in increasing order
and no reader ever skips a committed event (gaps from rolled-back
transactions are allowed). One lock per commit caps a database at one
commit's latency, so each store object commits the appends waiting in its
process together, one lock and one WAL flush for many commands (*group
commit*, docs/decisions.md, "PostgreSQL: the position lock and group commit").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import math
import queue
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ..core.arguments import (
    MAX_INTEGER,
    check_checkpoint,
    check_checkpoint_name,
    check_command_id,
    check_count,
    check_moment,
    check_position,
    check_snapshot,
    check_stream_read,
    checked_append,
    command_expiry,
    event_type_names,
    last_version_older_than,
    snapshot_version_bound,
    snapshots_to_keep,
)
from ..core.commands import result_of_command_record
from ..core.constraints import ConstraintOp, apply_constraints
from ..core.errors import (
    COPY_MARK,
    ConcurrencyError,
    DuplicateEventIdError,
    EventStoreError,
    IntegerRangeError,
    InterruptedCopyError,
    StorageError,
    StoreClosedError,
    StoreURLError,
    UniqueConstraintError,
    redact_secrets,
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
from ..core.ports import DEFAULT_COMMAND_TTL, AppendResult, Page, ProcessedCommand
from ..core.projections.read_models import StoreWriteInBatchError
from ..core.snapshots import Snapshot, SnapshotStats
from ..core.units import (
    StreamAppend,
    UnitResult,
    apply_unit_constraints,
    check_unit,
    unit_json,
)
from ..core.upcasting import Upcasters
from .limits import check_events, check_lookup, check_text, check_texts, limit_exceeded
from .schema import lock_key, migrate

EVENT_COLUMNS = (
    "event_id, aggregate_id, aggregate_type, event_type, version, position, timestamp, "
    "data, metadata, constraints"
)
_INSERT_EVENT = (
    "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
    "timestamp, data, metadata, constraints) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_COMMAND = (
    "INSERT INTO processed_commands "
    "(command_id, aggregate_id, event_ids, processed_at, expires_at) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (command_id) DO UPDATE SET aggregate_id = excluded.aggregate_id, "
    "event_ids = excluded.event_ids, processed_at = excluded.processed_at, "
    "expires_at = excluded.expires_at, unit = NULL"
)
_INSERT_UNIT_COMMAND = (
    "INSERT INTO processed_commands "
    "(command_id, aggregate_id, event_ids, processed_at, expires_at, unit) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (command_id) DO UPDATE SET aggregate_id = excluded.aggregate_id, "
    "event_ids = excluded.event_ids, processed_at = excluded.processed_at, "
    "expires_at = excluded.expires_at, unit = excluded.unit"
)
# Many events (_ARRAY_ROWS or more) in one statement whose text does not grow with
# their count: one array per column, unnested in order. Fixed text lets psycopg prepare
# it once (a VALUES list of 9 placeholders a row was converted by psycopg and parsed
# and planned by the server anew for each count); ORDER BY the ordinality keeps
# positions in version order.
# docs/decisions.md, "PostgreSQL appends many events with one array per column".
_INSERT_STREAM_EVENTS = (
    "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
    "timestamp, data, metadata, constraints) "
    "SELECT u.e, %s, %s, u.t, u.v, %s, u.d, u.m, u.c FROM unnest("
    "%s::text[], %s::text[], %s::bigint[], %s::bytea[], %s::text[], %s::text[]) "
    "WITH ORDINALITY AS u(e, t, v, d, m, c, n) ORDER BY u.n RETURNING position"
)
_INSERT_GROUP_EVENTS = (
    "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
    "timestamp, data, metadata, constraints) "
    "SELECT u.e, u.a, u.at, u.t, u.v, %s, u.d, u.m, u.c FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bytea[], "
    "%s::text[], %s::text[]) "
    "WITH ORDINALITY AS u(e, a, at, t, v, d, m, c, n) ORDER BY u.n "
    "RETURNING event_id, position"
)
#: From this many rows on, an insert takes one array per column; below, a VALUES list
#: (of a few rows it measured a little faster, and its text is one of a few, each
#: prepared once too).
_ARRAY_ROWS = 16
_INSERT_GROUP_COMMANDS = (
    "INSERT INTO processed_commands "
    "(command_id, aggregate_id, event_ids, processed_at, expires_at) "
    "SELECT u.i, u.a, u.e, %s, u.x FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::bigint[]) WITH ORDINALITY AS u(i, a, e, x, n) "
    "ORDER BY u.n "
    "ON CONFLICT (command_id) DO UPDATE SET aggregate_id = excluded.aggregate_id, "
    "event_ids = excluded.event_ids, processed_at = excluded.processed_at, "
    "expires_at = excluded.expires_at, unit = NULL"
)
_COMMAND_RECORD = (
    "SELECT event_ids, processed_at, expires_at, aggregate_id, unit FROM processed_commands "
    "WHERE command_id = %s"
)
_STREAM_VERSION = "SELECT MAX(version) FROM events WHERE aggregate_id = %s"
_COMMAND_AND_VERSION = (
    "SELECT (SELECT MAX(version) FROM events WHERE aggregate_id = %s), "
    "c.event_ids, c.processed_at, c.expires_at, c.aggregate_id, c.unit "
    "FROM (SELECT 1) AS one LEFT JOIN processed_commands AS c ON c.command_id = %s"
)
_CONSTRAINT_OWNER = (
    "SELECT aggregate_id FROM unique_constraints WHERE index_name = %s AND value = %s"
)
_UPSERT_CHECKPOINT = (
    "INSERT INTO projection_checkpoints (name, position, scanned_position, updated_at) "
    "VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
    "scanned_position = excluded.scanned_position, updated_at = excluded.updated_at"
)
_SNAPSHOT_COLUMNS = "aggregate_id, aggregate_type, version, schema_key, data, created_at"
_EXPIRY_SWEEP_CHANCE = 1 / 1_000
_EXPIRY_SWEEP_BATCH = 5_000
#: How many waiting appends one group commit takes at most.
MAX_GROUP = 256
#: How long ``close()`` waits for appends and reads in flight before it cuts their
#: connections (seconds; the ``close_timeout`` of ``PostgresEventStore``).
DEFAULT_CLOSE_TIMEOUT = 5.0
#: How long ``close()`` then waits for the threads it cut loose to notice (seconds).
_CUT_GRACE = 1.0
#: The schema names the store takes: a lowercase SQL name (PostgreSQL keeps 63 bytes).
#: A keyword (``user``, ``order``) is fine: the store quotes the name wherever it is used.
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Schema names with this prefix are PostgreSQL's own: the server refuses to create one.
RESERVED_SCHEMA_PREFIX = "pg_"
#: How long a connection attempt, and a read waiting for a pooled connection, may take
#: when neither the DSN (``?connect_timeout=``) nor ``connect_timeout=`` says (seconds).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: How long a read waits for a pooled connection when ``connect_timeout`` is 0 or less
#: (libpq's "wait indefinitely" for a connection): psycopg's own bound on such an
#: attempt, so a read never waits for ever (seconds).
UNBOUNDED_CONNECT_WAIT = 130.0
#: How long the reader pool keeps trying to replace a lost connection with backoff (1,
#: 2, 4 s ... within this window) before it starts again from a 1 s wait: so once the
#: server is back, reads get a connection within about 2 s, however long it was away
#: (psycopg_pool's default, 5 minutes, let the wait double to 32 s and more).
RECONNECT_WINDOW = 5.0

CommitListener = Callable[[int], None]

log = logging.getLogger("eventstore.postgres")


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of ``schema``'s commits: an identifier, so at most 63 bytes
    (a long schema name keeps its start and gets a hash of the whole)."""
    channel = f"eventstore_{schema}"
    if len(channel) <= 63:
        return channel
    return f"{channel[:54]}_{hashlib.sha256(schema.encode()).hexdigest()[:8]}"


def redact(dsn: str) -> str:
    """The DSN as a place name for messages: user, host, port and database, never a password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://?"
    user = str(parts.get("user", ""))
    host = str(parts.get("host", "") or "localhost")
    port = str(parts.get("port", "") or "5432")
    db = str(parts.get("dbname", "") or user)
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{db}"


def schema_name_problem(schema: object) -> str | None:
    """Why ``schema`` cannot name a store's PostgreSQL schema, or None when it can."""
    if not isinstance(schema, str) or not SCHEMA_NAME.match(schema):
        return (
            f"schema {schema!r} is not a lowercase SQL name (a letter or _, then letters, "
            "digits and _, at most 63)"
        )
    if schema.startswith(RESERVED_SCHEMA_PREFIX):
        return (
            f"schema {schema!r} starts with {RESERVED_SCHEMA_PREFIX!r}, which PostgreSQL "
            "keeps for its own schemas (the server refuses to create one)"
        )
    return None


def _connect_timeout(dsn: str, given: dict[str, Any], connect_timeout: object) -> float:
    """The store's connect timeout in seconds: the keyword's, else the DSN's, else 10 s;
    0 or less is libpq's "wait indefinitely" (kept as 0)."""
    if connect_timeout is None:
        raw = str(given.get("connect_timeout") or "").strip()
        if not raw:
            return DEFAULT_CONNECT_TIMEOUT
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            raise StoreURLError(
                dsn,
                f"option connect_timeout={raw!r} is not a number of seconds",
                "Give connect_timeout as whole seconds (?connect_timeout=10); 0 waits for a "
                "connection as long as it takes, as in libpq.",
            )
    elif isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)):
        raise TypeError(f"connect_timeout must be a number of seconds, got {connect_timeout!r}")
    elif not math.isfinite(connect_timeout):
        raise ValueError(
            f"connect_timeout must be a finite number of seconds (0 or less: wait as long "
            f"as it takes), got {connect_timeout}"
        )
    else:
        seconds = float(connect_timeout)
    return max(seconds, 0.0)


class PositionTakenError(StorageError):
    """An append drew a position that a stored event already has: the position sequence
    (``events_position_seq``) is behind the events, which ``eventstore copy`` leaves so
    until it finishes (or someone inserted events with explicit positions). Nothing was
    written. ``position`` is the one drawn (0 when the server did not say)."""

    def __init__(self, path: str, schema: str, aggregate_id: str, position: int) -> None:
        self.schema = schema
        self.aggregate_id = aggregate_id
        self.position = position
        at = f" {position}" if position else ""
        seq = sql.Identifier(schema, "events_position_seq").as_string()
        table = sql.Identifier(schema, "events").as_string()
        statement = f"SELECT setval('{seq}', (SELECT MAX(position) FROM {table}))"
        super().__init__(
            path,
            f"the append to aggregate {aggregate_id!r} drew position{at}, which a stored "
            "event already has: the position sequence is behind the events (an eventstore "
            "copy into this store that did not finish, or events inserted with explicit "
            "positions), so nothing was written",
            f"Finish the copy (run the same eventstore copy command again), or move the "
            f"sequence past the events: {statement};",
        )


def write_checkpoint(
    conn: psycopg.Connection[Any], name: str, position: int, scanned_position: int | None = None
) -> None:
    """Write a checkpoint on ``conn``, in whatever transaction is open there."""
    scanned = position if scanned_position is None else max(position, scanned_position)
    conn.execute(_UPSERT_CHECKPOINT, (name, position, scanned, time.time_ns() // 1000))


def read_progress(conn: psycopg.Connection[Any], name: str) -> tuple[int, int]:
    """``(checkpoint, scanned position)`` of ``name``; ``(0, 0)`` when it never ran."""
    row = conn.execute(
        "SELECT position, scanned_position FROM projection_checkpoints WHERE name = %s", (name,)
    ).fetchone()
    return (int(row[0]), max(int(row[0]), int(row[1]))) if row else (0, 0)


def _event_rows(cursor: Any) -> Callable[[Sequence[Any]], Event]:
    """A psycopg row factory: each row straight into an ``Event``."""
    return lambda values: Event(*values)


def _snapshot(row: Sequence[Any]) -> Snapshot:
    return Snapshot(row[0], row[1], row[2], row[3], bytes(row[4]), timestamp_from_micros(row[5]))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _ConstraintTable:
    """``core.constraints.ConstraintTable`` in this store's statements, on ``conn``."""

    __slots__ = ("conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def owner(self, index: str, value: str) -> str | None:
        row = self.conn.execute(_CONSTRAINT_OWNER, (index, value)).fetchone()
        return row[0] if row else None

    def claim(self, index: str, value: str, aggregate_id: str) -> None:
        self.conn.execute(
            "INSERT INTO unique_constraints (index_name, value, aggregate_id) VALUES (%s, %s, %s)",
            (index, value, aggregate_id),
        )

    def release(self, index: str, value: str) -> None:
        self.conn.execute(
            "DELETE FROM unique_constraints WHERE index_name = %s AND value = %s",
            (index, value),
        )


def _stream_version(conn: psycopg.Connection[Any], aggregate_id: str) -> int:
    found = conn.execute(_STREAM_VERSION, (aggregate_id,)).fetchone()
    return int((found[0] if found else 0) or 0)


class _Regroup(Exception):
    """A group's shared statements failed: commit its appends one by one instead."""


class AppendInterruptedError(StoreClosedError):
    """``close()`` cut the connection of an append the server had not answered within
    ``close_timeout``: it may or may not have committed.

    A ``StoreClosedError`` (over a wire: ``UNAVAILABLE``, send again with the same
    command id). ``what`` names the append (``an append to aggregate 'acc-1'``).
    """

    def __init__(self, store: str, what: str, close_timeout: float) -> None:
        self.store = store
        self.what = what
        self.close_timeout = close_timeout
        Exception.__init__(  # StoreClosedError's own message says less than this one
            self,
            f"event store {store!r} was closed while {what} waited on the server, which did "
            f"not answer within close_timeout ({close_timeout:g} s), so it may or may not "
            "have committed. Send it again, to a newly opened store, with the same command "
            "id (it is stored once); without one, read the stream first to see whether it "
            "is there.",
        )


def _cut(conn: psycopg.Connection[Any]) -> None:
    """Shut ``conn``'s socket down under libpq, from any thread: a statement waiting on the
    server (frozen, or unreachable) fails at once with ``OperationalError`` and the
    connection is broken. The descriptor stays libpq's, which closes it."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return  # closed already
    if fd < 0:
        return
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    finally:
        sock.detach()


def _driver_words(exc: BaseException) -> str:
    """psycopg's message on one line (libpq's cause, then its hint)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _set_search_path(schema: str) -> sql.Composed:
    """``SET search_path`` to ``schema``, quoted (``user`` and ``order`` are keywords)."""
    return sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))


@dataclass
class _ConnectFailure:
    """Why the reader pool's last attempt to connect failed ("" since one succeeded)."""

    last: str = ""


def _recording_connection_class(failure: _ConnectFailure) -> type[psycopg.Connection[Any]]:
    """The pool's connection class: a ``psycopg.Connection`` whose failed connects leave
    their cause in ``failure``, so a read that got no connection can say why (the pool
    itself only logs it)."""

    class PooledConnection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, *args: Any, **kwargs: Any) -> Any:
            try:
                conn = super().connect(*args, **kwargs)
            except psycopg.Error as exc:
                failure.last = _driver_words(exc)
                raise
            failure.last = ""
            return conn

    PooledConnection.__qualname__ = "PooledConnection"  # in psycopg_pool's log lines
    return PooledConnection


@dataclass(eq=False)
class _Append:
    """One append waiting for the group commit, and what became of it."""

    args: tuple[Any, ...]
    done: Callable[[_Append], None]
    result: tuple[Any, int] | None = None
    unit: bool = False  # args are (items, command_id, command_ttl) of an append_many
    error: BaseException | None = None
    signal: threading.Event = field(default_factory=threading.Event)


class PostgresEventStore:
    """Event store, snapshot, checkpoint and command store in one PostgreSQL schema.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host/db``).
    ``pool_size`` bounds the reader connections; writes go through one more
    connection owned by the group-commit thread. ``schema`` names the
    PostgreSQL schema holding the tables (created and migrated when missing),
    so several stores can share one database. Commits in other processes wake
    followers through ``LISTEN/NOTIFY``; polling stays as the fallback.

    ``close_timeout`` (seconds, default 5) bounds ``close()``: appends and reads in
    flight get that long to finish, then their connections are cut (see ``close``).
    A statement otherwise waits as long as the server takes to answer: a server
    that is frozen (stopped, its host up) keeps its connections open, so TCP
    keepalives and ``tcp_user_timeout`` do not end the wait (the host's kernel
    still acknowledges) and ``statement_timeout`` runs in the frozen server;
    ``close()`` ends such waits. For statements that run too long on a live
    server, put ``options=-c statement_timeout=...`` in the DSN.

    ``connect_timeout`` (seconds; default the DSN's ``connect_timeout``, else 10)
    bounds each connection attempt and how long a read waits for a pooled
    connection (``connect_wait``); 0 or less is libpq's "wait as long as it
    takes" for a connection, and a read then waits at most
    ``UNBOUNDED_CONNECT_WAIT``.

    A schema into which ``eventstore copy`` has not finished copying is refused
    (``InterruptedCopyError``, naming the copy and how to resume it);
    ``during_copy=True`` is for the copy itself, which opens its destination to
    create and migrate its tables.
    """

    #: How many threads usefully run this store's loads at once (read by
    #: ``Repository.load_async``): a load mostly waits on the server, so several overlap.
    load_threads = 4

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        schema: str = "eventstore",
        connect_timeout: float | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        during_copy: bool = False,
    ) -> None:
        unreadable: str | None = None
        try:
            given = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            unreadable = str(exc).strip() or type(exc).__name__
        if unreadable is not None:  # raised out here: libpq's error is not its context
            # libpq quotes what it could not read, which may be (part of) the password.
            raise StoreURLError(
                dsn,
                f"libpq cannot read it ({redact_secrets(unreadable, dsn)})",
                "Give postgresql://user:password@host:port/database, with libpq's own query "
                "parameters only (sslmode, connect_timeout, options, ...), and "
                "percent-encode what the password holds of % / ? # @ (%25 %2F %3F %23 %40).",
            )
        # 0 (or less): libpq waits for a connection as long as it takes.
        connect_timeout = _connect_timeout(dsn, given, connect_timeout)
        problem = schema_name_problem(schema)
        if problem is not None:
            raise StoreURLError(
                dsn,
                problem,
                "Give another schema name (?schema=NAME in the URL, or schema=): lowercase "
                "letters, digits and _, not starting with pg_.",
            )
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if isinstance(close_timeout, bool) or not isinstance(close_timeout, (int, float)):
            raise TypeError(f"close_timeout must be a number of seconds, got {close_timeout!r}")
        if not close_timeout >= 0:
            raise ValueError(
                f"close_timeout must be >= 0 seconds (how long close() waits for appends "
                f"and reads in flight), got {close_timeout}"
            )
        self.close_timeout = float(close_timeout)
        self.dsn = dsn
        self.schema = schema
        self.path = f"{redact(dsn)} (schema {schema})"
        self.channel = notify_channel(schema)
        self._position_lock = lock_key(schema, "position")
        # The projection whose batch this thread runs (see running_projection).
        self._batch_of_thread = threading.local()
        # Keyword arguments win over the DSN's: keep the DSN's own options beside ours.
        # A setting's value is no SQL: a keyword (user, order) needs no quotes there.
        options = " ".join(
            filter(None, [str(given.get("options") or ""), f"-c search_path={schema}"])
        )
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "options": options,
            # 0: libpq's (and psycopg's) "no limit" of its own.
            "connect_timeout": max(1, int(connect_timeout)) if connect_timeout > 0 else 0,
        }
        #: How long a read waits for a pooled connection before ``StorageError`` (seconds).
        self.connect_wait = connect_timeout if connect_timeout > 0 else UNBOUNDED_CONNECT_WAIT
        # Why the pool's last attempt to connect failed ("" once one succeeded).
        self._connect_failure = _ConnectFailure()
        self._closed = False
        self._cut_loose = False  # close() cut the connections of work in flight
        # The pooled connections in use (by reading()) and the thread using each.
        self._readers: dict[psycopg.Connection[Any], int] = {}
        self._readers_changed = threading.Condition()
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._listeners: list[CommitListener] = []
        self._listeners_lock = threading.Lock()
        self._listen_thread: threading.Thread | None = None
        self._sweep_cursor = ""
        self._writer_conn = self._connect()
        try:
            migrate(self._writer_conn, schema, self.path)
            self._writer_conn.execute(_set_search_path(schema))
            if not during_copy:
                self._refuse_an_unfinished_copy(self._writer_conn)
            self._pool: ConnectionPool[Any] = ConnectionPool(
                dsn,
                connection_class=_recording_connection_class(self._connect_failure),
                min_size=1,
                max_size=pool_size,
                kwargs=self._kwargs,
                open=True,
                timeout=self.connect_wait,
                name=f"eventstore-{schema}",
                reconnect_timeout=RECONNECT_WINDOW,
                reconnect_failed=self._reconnect_failed,
            )
        except BaseException:
            self._writer_conn.close()
            raise
        #: Group commits made and appends they carried (appends / commits = mean group size).
        self.group_commits = 0
        self.grouped_appends = 0
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        # Held by whoever commits a group: a caller leading one, or the writer thread.
        self._leader = threading.Lock()
        self._writer = threading.Thread(
            target=self._write_loop, name=f"eventstore-pg-writer-{schema}", daemon=True
        )
        self._writer.start()

    def _refuse_an_unfinished_copy(self, conn: psycopg.Connection[Any]) -> None:
        """``InterruptedCopyError`` when ``eventstore copy`` into this schema has not finished
        (its mark table is still there), before anything can be appended to it."""
        mark = sql.Identifier(self.schema, COPY_MARK)
        found = conn.execute("SELECT to_regclass(%s)", (mark.as_string(conn),)).fetchone()
        if not found or found[0] is None:
            return
        row = conn.execute(
            sql.SQL(
                "SELECT (SELECT source FROM {} LIMIT 1), (SELECT MAX(position) FROM {})"
            ).format(mark, sql.Identifier(self.schema, "events"))
        ).fetchone()
        source, head = row if row else ("", 0)
        raise InterruptedCopyError(self.path, redact_url(str(source or "?")), int(head or 0))

    def _reconnect_failed(self, pool: ConnectionPool[Any]) -> None:
        """The pool gave up replacing a connection after ``RECONNECT_WINDOW``: while reads
        wait for one, start again at once (from a 1 s backoff), so they get one within about
        2 s of the server's return; with none waiting, the next read starts it."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            if pool.get_stats().get("requests_waiting", 0):
                pool.check()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.dsn, **self._kwargs)
        except psycopg.OperationalError as exc:
            raise StorageError(
                self.path,
                f"cannot connect ({redact_secrets(_driver_words(exc), self.dsn)})",
                "Check that the server runs and the DSN's host, port, user and database.",
            ) from exc

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Finish the appends waiting to commit, then close every connection; bounded.

        Appends and reads in flight get ``close_timeout`` seconds to finish. Then
        close() cuts their connections (it shuts their sockets down, so neither a
        frozen server nor a lost network holds it up) and waits at most about a
        second more for each of its threads (writer, listener, pool). What the
        callers in flight get:

        - an append the server had begun but not answered:
          ``AppendInterruptedError`` (a ``StoreClosedError``): it may or may not have
          committed; send it again, to a new store, with the same command id;
        - an append that had not reached the server, or that came after close()
          began: ``StoreClosedError``; nothing of it was written;
        - a read: ``StoreClosedError``.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.close_timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self._queue.put(None)
        self._writer.join(left())
        leading = self._leader.acquire(timeout=left())  # a caller leading a group finishes
        self._wait_for_readers(deadline)
        if not leading or self._writer.is_alive() or self._readers_of_others():
            # Something still waits on the server: cut it loose.
            self._cut_loose = True
            log.warning(
                "closing %s: appends or reads still wait on the server after %g s; "
                "cutting their connections",
                self.path,
                self.close_timeout,
            )
            self._cut_connections(writer=not leading)
            deadline = time.monotonic() + _CUT_GRACE
            self._writer.join(left())
            leading = leading or self._leader.acquire(timeout=left())
        try:
            if leading:  # else a thread stuck in a reconnect still holds it: it closes it
                self._writer_conn.close()
        finally:
            if leading:
                self._leader.release()
        # An append queued just as the store closed: fail it rather than leave it waiting.
        while True:
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                late.error = StoreClosedError(self.path)
                late.done(late)
        thread, self._listen_thread = self._listen_thread, None
        if thread is not None:
            thread.join(0.5)  # it looks at _closed every 0.2 s
            if thread.is_alive():
                listening = self._listen_conn
                if listening is not None:
                    _cut(listening)
                thread.join(_CUT_GRACE)
        self._pool.close(timeout=_CUT_GRACE)
        with self._listeners_lock:
            listeners = list(self._listeners)
        wake_on_close(listeners)  # followers end now, not after their poll interval

    def _readers_of_others(self) -> list[psycopg.Connection[Any]]:
        """The connections in use by reads in other threads than this one."""
        me = threading.get_ident()
        with self._readers_changed:
            return [conn for conn, owner in self._readers.items() if owner != me]

    def _wait_for_readers(self, deadline: float) -> None:
        me = threading.get_ident()
        with self._readers_changed:
            while any(owner != me for owner in self._readers.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._readers_changed.wait(remaining)

    def _cut_connections(self, *, writer: bool) -> None:
        """Cut the connections of reads in other threads (and the writer's, when its group
        is stuck): each waiting statement fails at once."""
        me = threading.get_ident()
        with self._readers_changed:  # a connection listed here is not back in the pool
            for conn, owner in self._readers.items():
                if owner != me:
                    _cut(conn)
        if writer:
            _cut(self._writer_conn)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresEventStore({self.path!r}, {'closed' if self._closed else 'open'})"

    @contextlib.contextmanager
    def running_projection(self, name: str) -> Iterator[None]:
        """Mark this thread as running projection ``name``'s code in a batch whose
        transaction holds the position lock: a write through this store object there
        would wait for that lock for ever, so it fails instead, naming ``ctx.store``."""
        previous = getattr(self._batch_of_thread, "projection", None)
        self._batch_of_thread.projection = name
        try:
            yield
        finally:
            self._batch_of_thread.projection = previous

    def _refuse_in_batch(self) -> None:
        projection = getattr(self._batch_of_thread, "projection", None)
        if projection is not None:
            raise StoreWriteInBatchError(self.path, projection)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(self.path)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """A pooled autocommit connection for queries.

        A server that restarted has closed every pooled connection, and each one
        would fail once when next used: on the first that fails, the idle ones are
        checked (and the dead ones dropped), and the caller gets a ``StorageError``
        that says to retry, not psycopg's ``AdminShutdown``. A read that gets no
        connection within ``connect_wait`` (the server is down, or every pooled
        connection is busy) gets a ``StorageError`` saying which, not psycopg_pool's
        ``PoolTimeout``; the pool keeps reconnecting meanwhile, so reads work again
        within about 2 s of the server's return (``RECONNECT_WINDOW``). A read still
        waiting on the server ``close_timeout`` after ``close()`` began is cut:
        ``StoreClosedError``.
        """
        self._check_open()
        try:
            with self._pool.connection() as conn:
                me = threading.get_ident()
                with self._readers_changed:
                    self._readers[conn] = me
                try:
                    if self._closed:  # close() may have cut the others already
                        raise StoreClosedError(self.path)
                    yield conn
                except psycopg.OperationalError as exc:
                    if isinstance(exc, pgerrors.ProgramLimitExceeded):
                        raise limit_exceeded(self.path, "a statement", exc) from exc
                    if not (conn.closed or conn.broken):
                        raise
                    if self._closed:  # close() cut it, or the server went as it closed
                        raise StoreClosedError(self.path) from exc
                    with contextlib.suppress(Exception):
                        self._pool.check()
                    raise StorageError(
                        self.path,
                        "the connection to the server was lost "
                        f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})",
                        "Retry: the store connects again (the server may have restarted).",
                    ) from exc
                finally:
                    with self._readers_changed:
                        del self._readers[conn]
                        self._readers_changed.notify_all()
        except PoolClosed:
            raise StoreClosedError(self.path) from None
        except PoolTimeout as exc:
            if self._closed:
                raise StoreClosedError(self.path) from exc
            raise self._no_connection() from exc

    def _no_connection(self) -> StorageError:
        """The error of a read that got no pooled connection within ``connect_wait``."""
        size = self._pool.max_size
        with self._readers_changed:
            busy = len(self._readers)
        if busy >= size:
            return StorageError(
                self.path,
                f"every pooled connection ({busy} of pool_size {size}) stayed in use for "
                f"{self.connect_wait:g} s, so this read got none and nothing was read",
                "Retry; if reads often queue this long, open the store with a larger "
                "pool_size (?pool_size= in the URL), or look for reads that hold a "
                "connection long.",
            )
        cause = self._connect_failure.last
        why = f" ({redact_secrets(cause, self.dsn)})" if cause else ""
        return StorageError(
            self.path,
            f"no connection to the server within {self.connect_wait:g} s{why}, so nothing was read",
            "Retry: the store connects again by itself within about 2 s of the server "
            "answering (check that it runs, and the DSN's host and port).",
        )

    # -- commit notifications ----------------------------------------------------------------
    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(head_position)`` after commits: this object's at once, and other
        processes' when their ``NOTIFY`` arrives (a lost one is found by polling)."""
        with self._listeners_lock:
            self._listeners.append(listener)
            if self._listen_thread is None and not self._closed:
                self._listen_thread = threading.Thread(
                    target=self._listen_loop,
                    name=f"eventstore-pg-listen-{self.schema}",
                    daemon=True,
                )
                self._listen_thread.start()

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
                log.exception("commit listener %r failed at position %d", listener, head)

    def _listen_loop(self) -> None:
        """Hear other processes' commits; reconnects after a failure, polling covers the gap."""
        while not self._closed:
            try:
                with psycopg.connect(self.dsn, **self._kwargs) as conn:
                    self._listen_conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    while not self._closed:
                        for note in conn.notifies(timeout=0.2):
                            self._notify(int(note.payload or 0))
            except Exception as exc:  # the server went away: retry, followers poll meanwhile
                if self._closed:
                    return
                log.warning("LISTEN on %s failed (%s); retrying in 1 s", self.path, exc)
                time.sleep(1.0)
            finally:
                self._listen_conn = None

    # -- writing: group commit ----------------------------------------------------------------
    def _write_loop(self) -> None:
        """Commit the appends that queued while another group was committing."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            with self._leader:
                batch, stop = self._drain([first])
                self._run_group(batch)
            if stop:
                return

    def _drain(self, batch: list[_Append]) -> tuple[list[_Append], bool]:
        """Add the waiting appends to ``batch``; True when the stop mark was met."""
        while len(batch) < MAX_GROUP:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return batch, True
            batch.append(more)
        return batch, False

    def _run_group(self, batch: list[_Append]) -> None:
        try:
            self._commit_group(self._writer_conn, batch)
        finally:
            for item in batch:
                item.done(item)

    def _commit_group(
        self,
        conn: psycopg.Connection[Any],
        batch: list[_Append],
        *,
        together: bool = True,
        retry: bool = True,
    ) -> None:
        """Run every append of ``batch`` in one transaction under the position lock."""
        last = 0
        begun = False  # nothing of the group reached the server before this is set
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._position_lock,))
                begun = True
                grouped = together and len(batch) > 1 and self._append_group(conn, batch)
                if grouped:
                    last = max((i.result[1] for i in batch if i.result), default=0)
                for item in batch if not grouped else ():
                    try:
                        if len(batch) == 1:
                            item.result = self._run_item(conn, item)
                        else:
                            with conn.transaction():  # a savepoint: one failure undoes one
                                item.result = self._run_item(conn, item)
                    except Exception as exc:
                        item.error = exc
                        if len(batch) == 1:
                            raise
                    else:
                        last = max(last, item.result[1])
                if last:
                    conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(last)))
        except _Regroup:
            for item in batch:
                item.error = item.result = None
            self._commit_group(conn, batch, together=False, retry=retry)
            return
        except Exception as exc:
            failure: BaseException = exc
            broken = conn.closed or conn.broken
            if broken and not self._closed:
                log.warning("the writer connection of %s broke (%s); reconnecting", self.path, exc)
                with contextlib.suppress(Exception):
                    conn.close()
                try:
                    fresh = self._connect()
                    fresh.execute(_set_search_path(self.schema))
                except Exception:
                    log.exception("reconnecting the writer of %s failed", self.path)
                else:
                    if self._closed:  # close() began meanwhile: it waits for no new connection
                        fresh.close()
                    else:
                        self._writer_conn = fresh
                        if not begun and retry:
                            # It broke before the group began (a server restarted since the
                            # last commit): nothing was sent, so the group runs again, once.
                            for item in batch:
                                item.error = item.result = None
                            self._commit_group(fresh, batch, together=together, retry=False)
                            return
            if broken and not begun and self._closed:
                # Lost (cut by close()) before anything of the group reached the server.
                failure = StoreClosedError(self.path)
            for item in batch:
                if item.error is None:
                    item.error, item.result = failure, None
            return
        self.group_commits += 1
        self.grouped_appends += len(batch)
        if last:
            self._notify(last)

    def _append_group(self, conn: psycopg.Connection[Any], batch: list[_Append]) -> bool:
        """Append a group of plain commands with a few statements for all; False to go one
        by one instead (a command seen before, constraints, a repeated command id, or a
        statement failing), with nothing written.

        The checks are append's, made on the group's rows read in one query: the stored
        versions (updated as the group's own appends go in) and the command records.
        """
        if any(i.unit for i in batch):
            return False  # a unit goes one by one, in its savepoint
        items = [i.args for i in batch]
        commands = [a[5] for a in items if a[5]]
        if (
            any(not a[3] for a in items)
            or any(e.constraints for a in items for e in a[3])
            or len(set(commands)) != len(commands)
        ):
            return False
        # The stored versions and any record of these command ids, in one round trip.
        found = conn.execute(
            "SELECT aggregate_id, MAX(version) FROM events WHERE aggregate_id = ANY(%s) "
            "GROUP BY aggregate_id UNION ALL SELECT NULL, 0 FROM processed_commands "
            "WHERE command_id = ANY(%s)",
            (list({a[0] for a in items}), commands),
        ).fetchall()
        if any(row[0] is None for row in found):
            return False  # a retry among them: the one-by-one path answers it
        versions: dict[str, int] = {row[0]: int(row[1]) for row in found}
        now = time.time_ns() // 1000
        rows: list[tuple[Any, ...]] = []
        records: list[tuple[Any, ...]] = []
        planned: list[tuple[_Append, list[tuple[Any, ...]]] | None] = []
        for item, (aggregate_id, aggregate_type, expected, events, encoded, command_id, ttl) in zip(
            batch, items, strict=True
        ):
            actual = versions.get(aggregate_id, 0)
            if actual != expected:
                item.error = ConcurrencyError(aggregate_id, expected, actual)
                planned.append(None)
                continue
            own = [
                (
                    e.event_id,
                    aggregate_id,
                    aggregate_type,
                    e.event_type,
                    expected + n,
                    now,
                    e.data,
                    meta,
                    cons,
                )
                for n, (e, (meta, cons)) in enumerate(zip(events, encoded, strict=True), 1)
            ]
            versions[aggregate_id] = expected + len(own)
            rows.extend(own)
            planned.append((item, own))
            if command_id:
                ids = "[" + ",".join([quote_json(e.event_id) for e in events]) + "]"
                expires = command_expiry(now, ttl)
                records.append((command_id, aggregate_id, ids, now, expires))
        try:
            positions: dict[str, int] = {}
            if len(rows) >= _ARRAY_ROWS:
                columns = list(zip(*rows, strict=True))
                positions = dict(
                    conn.execute(
                        _INSERT_GROUP_EVENTS,
                        (now, *(list(columns[i]) for i in (0, 1, 2, 3, 4, 6, 7, 8))),
                    ).fetchall()
                )
            elif rows:
                head = _INSERT_EVENT.split(" VALUES ")[0]
                values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
                flat = [v for r in rows for v in r]
                positions = dict(
                    conn.execute(  # type: ignore[arg-type]
                        f"{head} VALUES {values} RETURNING event_id, position".encode(), flat
                    ).fetchall()
                )
            if len(records) >= _ARRAY_ROWS:
                command_ids, aggregates, event_ids, _, expiries = zip(*records, strict=True)
                conn.execute(
                    _INSERT_GROUP_COMMANDS,
                    (now, list(command_ids), list(aggregates), list(event_ids), list(expiries)),
                )
            elif records:
                marks = ", ".join(["(%s, %s, %s, %s, %s)"] * len(records))
                conn.execute(
                    _INSERT_COMMAND.replace(
                        "VALUES (%s, %s, %s, %s, %s)", f"VALUES {marks}"
                    ).encode(),
                    [v for r in records for v in r],
                )
        except (pgerrors.IntegrityError, pgerrors.ProgramLimitExceeded):
            # An event id stored before, or one too long to index, say: the transaction
            # is void; go one by one, so that only its own append fails.
            raise _Regroup from None
        stamp = timestamp_from_micros(now)
        for entry in planned:
            if entry is None:
                continue
            item, own = entry
            stored = tuple(
                Event(r[0], r[1], r[2], r[3], r[4], positions[r[0]], now, r[6], r[7], r[8])
                for r in own
            )
            item.result = AppendResult(stored, False, stamp), stored[-1].position
        return True

    def _run_item(self, conn: psycopg.Connection[Any], item: _Append) -> tuple[Any, int]:
        if item.unit:
            return self._append_many_on(conn, *item.args)
        return self._append_on(conn, *item.args)

    def _check_values(self, args: tuple[Any, ...]) -> None:
        """What PostgreSQL cannot store of an append (limits.py), refused before it is sent."""
        aggregate_id, aggregate_type, _, events, _, command_id, _ = args
        where = f"append to {aggregate_id!r}"
        check_events(self.path, where, aggregate_id, aggregate_type, events)
        check_text(self.path, where, "command_id", command_id)

    def _check_unit_values(self, items: Sequence[StreamAppend], command_id: str | None) -> None:
        """``_check_values`` for every stream of a unit: one bad member refuses the unit."""
        where = f"append_many of {len(items)} streams"
        check_text(self.path, where, "command_id", command_id)
        for n, item in enumerate(items):
            check_events(
                self.path,
                where,
                item.aggregate_id,
                item.aggregate_type,
                item.events,
                prefix=f"appends[{n}].",
            )

    def _submit(self, item: _Append) -> None:
        self._check_open()
        self._queue.put(item)

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
        self._refuse_in_batch()
        args = checked_append(
            self.path,
            aggregate_id,
            aggregate_type,
            expected_version,
            events,
            command_id,
            command_ttl,
        )
        self._check_values(args)
        item = _Append(args, lambda i: i.signal.set())
        self._commit_waiting(item)
        return self._finish(item)

    def _commit_waiting(self, item: _Append) -> None:
        """Get ``item`` committed and wait for it, from a synchronous caller."""
        self._check_open()
        if self._leader.acquire(blocking=False):
            # Nobody is committing: lead a group now, with whatever waits, in this thread
            # (no hand-off to the writer thread for a lone client).
            try:
                batch, stop = self._drain([item])
                if stop:
                    self._queue.put(None)
                self._run_group(batch)
            finally:
                self._leader.release()
        else:
            # A group is committing: join the next one, which the writer thread commits.
            self._queue.put(item)
            item.signal.wait()

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
        """``append`` without blocking the event loop: it joins the next group commit."""
        self._refuse_in_batch()
        args = checked_append(
            self.path,
            aggregate_id,
            aggregate_type,
            expected_version,
            events,
            command_id,
            command_ttl,
        )
        self._check_values(args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(_: _Append) -> None:
            loop.call_soon_threadsafe(_resolve, future)

        item = _Append(args, done)
        self._submit(item)
        await future
        if item.error is None:
            return self._finish(item)
        return await asyncio.to_thread(self._finish, item)

    def _finish(self, item: _Append) -> AppendResult:
        aggregate_id, _, expected_version, events, _, command_id, _ = item.args
        exc = item.error
        if exc is None:
            assert item.result is not None
            result = item.result[0]
            fresh = command_id and not result.already_processed
            if fresh and random.random() < _EXPIRY_SWEEP_CHANCE:
                self._sweep_after_commit()
            return result
        if isinstance(exc, (ConcurrencyError, UniqueConstraintError, pgerrors.IntegrityError)):
            # A retry of a command whose record expired fails a check: look for its ids.
            if command_id and events:
                known = self.find_command(command_id, aggregate_id)
                if known is not None:
                    return known
            if isinstance(exc, pgerrors.IntegrityError):
                raise self._integrity_error(exc, aggregate_id, expected_version, events) from exc
        if isinstance(exc, pgerrors.ProgramLimitExceeded):
            raise limit_exceeded(self.path, f"append to {aggregate_id!r}", exc) from exc
        if isinstance(exc, psycopg.OperationalError):
            if self._cut_loose:
                raise AppendInterruptedError(
                    self.path, f"an append to aggregate {aggregate_id!r}", self.close_timeout
                ) from exc
            raise StorageError(
                self.path,
                f"the append to aggregate {aggregate_id!r} failed ({exc}); if the connection "
                "was lost at the commit, it may have been stored",
                "Check the server, then send it again with the same command id (it is stored "
                "once); without one, read the stream first to see whether it is there.",
            ) from exc
        raise exc

    def append_on(
        self,
        conn: psycopg.Connection[Any],
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> tuple[AppendResult, int]:
        """``append`` on ``conn``, already inside a transaction that the caller commits.

        For a ``PostgresReadModel`` on this store, and for tests that hold a
        transaction open: takes the position lock (held until that transaction
        ends), runs every check of ``append`` in a savepoint, and returns the
        result and the last position written (0 when none). Call
        ``notify_commit`` once the transaction committed.
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
        self._check_values(args)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._position_lock,))
        try:
            with conn.transaction():
                result = self._append_on(conn, *args)
        except pgerrors.ProgramLimitExceeded as exc:
            raise limit_exceeded(self.path, f"append to {aggregate_id!r}", exc) from exc
        except (ConcurrencyError, UniqueConstraintError, pgerrors.IntegrityError) as exc:
            if command_id and events:
                known = self._find_command(conn, command_id, aggregate_id, time.time_ns() // 1000)
                if known is not None:
                    return known, 0
            if isinstance(exc, pgerrors.IntegrityError):
                raise self._integrity_error(exc, aggregate_id, expected_version, events) from exc
            raise
        if result[1]:
            conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(result[1])))
        return result

    # -- units: several aggregates in one transaction ------------------------------------------
    def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """Append to several streams in one transaction, all or nothing (as SQLite's).

        Runs on a pooled connection under the position lock, beside the group
        commit (which takes the same lock), so positions stay in commit order.
        """
        self._refuse_in_batch()
        items = check_unit(self.path, appends, command_id, command_ttl)
        self._check_unit_values(items, command_id)
        item = _Append((items, command_id, command_ttl), lambda i: i.signal.set(), unit=True)
        self._commit_waiting(item)
        return self._finish_unit(item)

    def _finish_unit(self, item: _Append) -> UnitResult:
        items, command_id, _ = item.args
        exc = item.error
        if exc is None:
            assert item.result is not None
            result: UnitResult = item.result[0]
            return result
        if command_id and isinstance(
            exc, (ConcurrencyError, UniqueConstraintError, DuplicateEventIdError)
        ):
            with self.reading() as conn:
                known = self._unit_by_event_ids(conn, items, command_id)
            if known is not None:
                return known
        if isinstance(exc, pgerrors.ProgramLimitExceeded):
            raise limit_exceeded(self.path, f"append_many of {len(items)} streams", exc) from exc
        if isinstance(exc, psycopg.OperationalError):
            if self._cut_loose:
                raise AppendInterruptedError(
                    self.path, f"a unit of {len(items)} appends", self.close_timeout
                ) from exc
            raise StorageError(
                self.path,
                f"the unit of {len(items)} appends failed ({exc}); if the connection was "
                "lost at the commit, it may have been stored",
                "Check the server, then send it again with the same command id (it is stored "
                "once); without one, read the streams first to see whether it is there.",
            ) from exc
        raise exc

    async def append_many_async(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """``append_many`` without blocking the event loop: it joins the next group commit."""
        self._refuse_in_batch()
        items = check_unit(self.path, appends, command_id, command_ttl)
        self._check_unit_values(items, command_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(_: _Append) -> None:
            loop.call_soon_threadsafe(_resolve, future)

        item = _Append((items, command_id, command_ttl), done, unit=True)
        self._submit(item)
        await future
        if item.error is None:
            return self._finish_unit(item)
        return await asyncio.to_thread(self._finish_unit, item)

    def append_many_on(
        self,
        conn: psycopg.Connection[Any],
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> tuple[UnitResult, int]:
        """``append_many`` on ``conn`` inside the caller's transaction (see ``append_on``)."""
        items = check_unit(self.path, appends, command_id, command_ttl)
        self._check_unit_values(items, command_id)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._position_lock,))
        try:
            with conn.transaction():
                result = self._append_many_on(conn, items, command_id, command_ttl)
        except pgerrors.ProgramLimitExceeded as exc:
            where = f"append_many of {len(items)} streams"
            raise limit_exceeded(self.path, where, exc) from exc
        except (ConcurrencyError, UniqueConstraintError, DuplicateEventIdError):
            if command_id:
                known = self._unit_by_event_ids(conn, items, command_id)
                if known is not None:
                    return known, 0
            raise
        if result[1]:
            conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(result[1])))
        return result

    def _append_many_on(
        self,
        conn: psycopg.Connection[Any],
        items: Sequence[StreamAppend],
        command_id: str | None,
        command_ttl: timedelta,
    ) -> tuple[UnitResult, int]:
        now = time.time_ns() // 1000
        if command_id:
            row = conn.execute(_COMMAND_RECORD, (command_id,)).fetchone()
            if row is not None and row[2] > now:
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
                with conn.transaction():  # a savepoint, so the error's facts can be read
                    result, position = self._append_on(
                        conn,
                        item.aggregate_id,
                        item.aggregate_type,
                        item.expected_version,
                        list(item.events),
                        encoded,
                        None,
                        command_ttl,
                        False,
                    )
            except pgerrors.IntegrityError as exc:
                raise self._integrity_error(
                    exc, item.aggregate_id, item.expected_version, item.events
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
        self, conn: psycopg.Connection[Any], items: Sequence[StreamAppend], command_id: str
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
        conn: psycopg.Connection[Any],
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        encoded: Sequence[tuple[str | None, str | None]],
        command_id: str | None,
        command_ttl: timedelta,
        constraints: bool = True,
    ) -> tuple[AppendResult, int]:
        """The body of an append under the position lock: (result, last position)."""
        now = time.time_ns() // 1000  # under the lock, so timestamps follow positions
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
            actual, *record = conn.execute(
                _COMMAND_AND_VERSION, (aggregate_id, command_id)
            ).fetchone()  # type: ignore[misc]
            known = self._result_of_record(conn, record, command_id, aggregate_id, now)
            if known is not None:
                return known, 0
        elif rows:
            actual = conn.execute(_STREAM_VERSION, (aggregate_id,)).fetchone()[0]  # type: ignore[index]
        elif command_id:
            known = self._find_command(conn, command_id, aggregate_id, now)
            if known is not None:
                return known, 0
        positions: list[int] = []
        if rows:
            actual = actual or 0
            if actual != expected_version:
                raise ConcurrencyError(aggregate_id, expected_version, actual)
            if constraints:  # a unit applies its own first (apply_unit_constraints)
                apply_constraints(_ConstraintTable(conn), aggregate_id, events)
            if len(rows) == 1:
                inserted = conn.execute(_INSERT_EVENT + " RETURNING position", rows[0]).fetchone()
                positions = [int(inserted[0])] if inserted else []
            elif len(rows) < _ARRAY_ROWS:
                values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
                sql = _INSERT_EVENT.split(" VALUES ")[0] + f" VALUES {values} RETURNING position"
                flat = [v for r in rows for v in r]
                positions = sorted(r[0] for r in conn.execute(sql.encode(), flat).fetchall())
            else:
                inserted_rows = conn.execute(
                    _INSERT_STREAM_EVENTS,
                    (
                        aggregate_id,
                        aggregate_type,
                        now,
                        [e.event_id for e in events],
                        [e.event_type for e in events],
                        [r[4] for r in rows],
                        [e.data for e in events],
                        [meta for meta, _ in encoded],
                        [cons for _, cons in encoded],
                    ),
                ).fetchall()
                positions = sorted(r[0] for r in inserted_rows)
            last = positions[-1]
        if command_id:
            expires = command_expiry(now, command_ttl)
            ids = "[" + ",".join([quote_json(e.event_id) for e in events]) + "]"
            conn.execute(_INSERT_COMMAND, (command_id, aggregate_id, ids, now, expires))
        stored = tuple(
            Event(r[0], r[1], r[2], r[3], r[4], position, now, r[6], r[7], r[8])
            for position, r in zip(positions, rows, strict=True)
        )
        return AppendResult(stored, False, timestamp_from_micros(now)), last

    def _integrity_error(
        self,
        exc: pgerrors.IntegrityError,
        aggregate_id: str,
        expected: int,
        events: Sequence[NewEvent],
    ) -> Exception:
        constraint = getattr(exc.diag, "constraint_name", "") or ""
        if constraint == "events_aggregate_id_version_key":
            return ConcurrencyError(aggregate_id, expected, self.stream_version(aggregate_id))
        if constraint == "events_event_id_key":
            wanted = [e.event_id for e in events]
            with self.reading() as conn:
                stored = {event.event_id for event in self._events_by_id(conn, wanted)}
            return DuplicateEventIdError(aggregate_id, [i for i in wanted if i in stored] or wanted)
        if constraint == "events_pkey":
            drawn = re.search(r"\)=\((\d+)\)", getattr(exc.diag, "message_detail", "") or "")
            return PositionTakenError(
                self.path, self.schema, aggregate_id, int(drawn.group(1)) if drawn else 0
            )
        return EventStoreError(f"cannot append to aggregate {aggregate_id!r}: {exc}")

    # -- commands ------------------------------------------------------------------------------
    def _result_of_record(
        self,
        conn: psycopg.Connection[Any],
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
        self, conn: psycopg.Connection[Any], command_id: str, aggregate_id: str, now: int
    ) -> AppendResult | None:
        row = conn.execute(_COMMAND_RECORD, (command_id,)).fetchone()
        known = self._result_of_record(conn, row, command_id, aggregate_id, now)
        if known is not None:
            return known
        return self._find_by_event_ids(conn, command_id, aggregate_id)

    def _find_by_event_ids(
        self, conn: psycopg.Connection[Any], command_id: str, aggregate_id: str
    ) -> AppendResult | None:
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
    def _events_by_id(conn: psycopg.Connection[Any], ids: Sequence[str]) -> tuple[Event, ...]:
        if not ids:
            return ()
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY(%s) ORDER BY position",
            (list(ids),),
        ).fetchall()
        return tuple(itertools.starmap(Event, rows))

    def find_command(self, command_id: str, aggregate_id: str) -> AppendResult | None:
        check_command_id("find_command", command_id)
        check_lookup(
            self.path, "find_command", ("command_id", command_id), ("aggregate_id", aggregate_id)
        )
        with self.reading() as conn:
            return self._find_command(conn, command_id, aggregate_id, time.time_ns() // 1000)

    async def find_command_async(self, command_id: str, aggregate_id: str) -> AppendResult | None:
        return await asyncio.to_thread(self.find_command, command_id, aggregate_id)

    def processed_command(self, command_id: str) -> ProcessedCommand | None:
        check_command_id("processed_command", command_id)
        check_lookup(self.path, "processed_command", ("command_id", command_id))
        with self.reading() as conn:
            row = conn.execute(
                "SELECT command_id, aggregate_id, event_ids, processed_at, expires_at, unit "
                "FROM processed_commands WHERE command_id = %s",
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
        try:
            self.sweep_expired_commands()
        except StoreClosedError:
            pass  # closed between the commit and the sweep: the next store object sweeps
        except Exception:
            log.exception("sweeping expired command records of %r failed", self.path)

    def sweep_expired_commands(self, batch: int = _EXPIRY_SWEEP_BATCH) -> int:
        """Delete expired command records among the next ``batch`` records (key order)."""
        check_count("sweep_expired_commands: batch", batch)
        batch = min(batch, MAX_INTEGER)
        now = time.time_ns() // 1000
        with self.reading() as conn, conn.transaction():
            # Counted and ended in SQL: the batch's keys never become Python objects.
            count, last = conn.execute(
                "SELECT count(*), max(command_id) FROM (SELECT command_id "
                "FROM processed_commands WHERE command_id > %s "
                "ORDER BY command_id LIMIT %s) AS batch",
                (self._sweep_cursor, batch),
            ).fetchone()
            if not count:
                self._sweep_cursor = ""
                return 0
            deleted = conn.execute(
                "DELETE FROM processed_commands WHERE command_id > %s AND command_id <= %s "
                "AND expires_at <= %s",
                (self._sweep_cursor, last, now),
            ).rowcount
            self._sweep_cursor = last if count == batch else ""
            return deleted

    def delete_expired_commands(self, now: datetime | None = None) -> int:
        """Delete command records past their TTL (as of ``now``); returns how many went."""
        if now is not None:
            check_moment("delete_expired_commands", "now", now)
        cutoff = time.time_ns() // 1000 if now is None else micros_from_timestamp(now)
        with self.reading() as conn:
            return conn.execute(
                "DELETE FROM processed_commands WHERE expires_at <= %s", (cutoff,)
            ).rowcount

    # -- reading -------------------------------------------------------------------------------
    def load_stream(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[Event]:
        self._check_stream_read("load_stream", aggregate_id, after_version, up_to_version)
        if after_version > MAX_INTEGER:
            raise IntegerRangeError(self.path, "after_version", after_version)
        if up_to_version is not None and up_to_version > MAX_INTEGER:
            up_to_version = MAX_INTEGER
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = %s AND version > %s"
        params: list[object] = [aggregate_id, after_version]
        if up_to_version is not None:
            sql += " AND version <= %s"
            params.append(up_to_version)
        with self.reading() as conn:
            return list(itertools.starmap(Event, conn.execute(sql + " ORDER BY version", params)))

    def load_stream_payloads(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[tuple[str, int, bytes]]:
        """``load_stream`` as ``(event_type, version, data)`` rows, no ``Event`` built
        (what ``Repository.load`` reads for a replay without upcasters)."""
        self._check_stream_read("load_stream_payloads", aggregate_id, after_version, up_to_version)
        if after_version > MAX_INTEGER:
            raise IntegerRangeError(self.path, "after_version", after_version)
        if up_to_version is not None and up_to_version > MAX_INTEGER:
            up_to_version = MAX_INTEGER
        sql = (
            "SELECT event_type, version, data FROM events WHERE aggregate_id = %s AND version > %s"
        )
        params: list[object] = [aggregate_id, after_version]
        if up_to_version is not None:
            sql += " AND version <= %s"
            params.append(up_to_version)
        with self.reading() as conn:
            return conn.execute(sql + " ORDER BY version", params).fetchall()

    async def load_stream_async(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[Event]:
        return await asyncio.to_thread(self.load_stream, aggregate_id, after_version, up_to_version)

    def _check_stream_read(
        self, where: str, aggregate_id: object, after_version: object, up_to_version: object
    ) -> None:
        """``load_stream``'s arguments, checked as SQLite's store checks them, and the id's
        text as PostgreSQL can hold it."""
        check_stream_read(where, aggregate_id, after_version, up_to_version)
        check_text(self.path, where, "aggregate_id", aggregate_id)

    def stream_version(self, aggregate_id: str) -> int:
        check_lookup(self.path, "stream_version", ("aggregate_id", aggregate_id))
        with self.reading() as conn:
            row = conn.execute(_STREAM_VERSION, (aggregate_id,)).fetchone()
        return int(row[0] or 0) if row else 0

    async def stream_version_async(self, aggregate_id: str) -> int:
        return await asyncio.to_thread(self.stream_version, aggregate_id)

    def _event_type_names(self, where: str, event_types: object) -> list[str] | None:
        names = event_type_names(event_types)
        check_texts(self.path, where, (("event_types", name) for name in names or ()))
        return names

    def _check_after(self, after_position: int) -> None:
        check_position("after_position", after_position)
        if after_position > MAX_INTEGER:
            raise IntegerRangeError(self.path, "after_position", after_position)

    def read_all(
        self,
        after_position: int = 0,
        *,
        limit: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> list[Event]:
        """Events with position > ``after_position`` in position order (never the one at it)."""
        self._check_after(after_position)
        event_types = self._event_type_names("read_all", event_types)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s"
        params: list[object] = [after_position]
        if event_types is not None:
            if not event_types:
                return []
            sql += " AND event_type = ANY(%s)"
            params.append(list(event_types))
        sql += " ORDER BY position"
        if limit is not None:
            check_count("limit", limit)
            limit = min(limit, MAX_INTEGER)  # no more rows than that exist
            sql += " LIMIT %s"
            params.append(limit)
        with self.reading() as conn, conn.cursor(binary=True, row_factory=_event_rows) as cursor:
            # Binary results (bytea arrives as bytes, no hex to decode), made into events
            # as they are read, without a tuple in between.
            return cursor.execute(sql, params).fetchall()

    def read_page(
        self,
        after_position: int,
        *,
        limit: int,
        event_types: Sequence[str] | None = None,
    ) -> Page:
        """Up to ``limit`` events after ``after_position``, and how far this read scanned.

        The head is read first, then the events: positions become visible in
        commit order (the position lock), so every event at or below that head
        is visible to the second read and nothing matching is skipped. Events
        that committed between the two reads may come back too: the page then
        reaches past the head, to its last event (else the next page would hand
        them out again).
        """
        self._check_after(after_position)
        event_types = self._event_type_names("read_page", event_types)
        check_count("limit", limit)
        limit = min(limit, MAX_INTEGER)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s"
        params: list[object] = [after_position]
        if event_types is not None:
            sql += " AND event_type = ANY(%s)"
            params.append(list(event_types))
        sql += " ORDER BY position LIMIT %s"
        params.append(limit)
        with self.reading() as conn:
            head = conn.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0  # type: ignore[index]
            events = list(itertools.starmap(Event, conn.execute(sql, params)))
        if len(events) == limit:
            return Page(events, events[-1].position)
        last = events[-1].position if events else 0
        return Page(events, max(after_position, head, last))

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
        with self.reading() as conn:
            row = conn.execute("SELECT MAX(position) FROM events").fetchone()
        return int(row[0] or 0) if row else 0

    def follow(
        self,
        after_position: int = 0,
        *,
        event_types: Sequence[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        page_size: int = 1000,
        upcasters: Upcasters | None = None,
    ) -> Subscription:
        """Events after ``after_position`` as they commit (woken by NOTIFY, else polling)."""
        return Subscription(
            self,
            after_position,
            event_types=event_types,
            poll_interval=poll_interval,
            page_size=page_size,
            upcasters=upcasters,
        )

    def count_events(self) -> int:
        with self.reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])  # type: ignore[index]

    # -- unique constraints --------------------------------------------------------------------
    def constraint_owner(self, index: str, value: str) -> str | None:
        where = "constraint_owner"
        check_lookup(self.path, where, ("index", index), ("value", value))
        with self.reading() as conn:
            row = conn.execute(_CONSTRAINT_OWNER, (index, value)).fetchone()
        return row[0] if row else None

    def rebuild_constraints(self) -> int:
        """Recompute the unique-constraint table from the claims and releases in the log."""
        self._refuse_in_batch()
        with self.reading() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._position_lock,))
            owners: dict[tuple[str, str], str] = {}
            rows = conn.execute(
                "SELECT aggregate_id, constraints FROM events WHERE constraints IS NOT NULL "
                "ORDER BY position"
            ).fetchall()
            for aggregate_id, raw in rows:
                for index, value, op in json.loads(raw):
                    if op == ConstraintOp.CLAIM.value:
                        owners[(index, value)] = aggregate_id
                    elif owners.get((index, value)) == aggregate_id:
                        del owners[(index, value)]
            conn.execute("DELETE FROM unique_constraints")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO unique_constraints (index_name, value, aggregate_id) "
                    "VALUES (%s, %s, %s)",
                    [(i, v, a) for (i, v), a in owners.items()],
                )
            return len(owners)

    # -- snapshots -----------------------------------------------------------------------------
    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot; saving the same (aggregate, version) again replaces it harmlessly."""
        check_snapshot(self.path, snapshot)
        check_texts(
            self.path,
            "save_snapshot",
            (
                ("aggregate_id", snapshot.aggregate_id),
                ("aggregate_type", snapshot.aggregate_type),
                ("schema_key", snapshot.schema_key),
            ),
        )
        with self.reading() as conn:
            conn.execute(
                f"INSERT INTO snapshots ({_SNAPSHOT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (aggregate_id, version) DO UPDATE SET "
                "aggregate_type = excluded.aggregate_type, schema_key = excluded.schema_key, "
                "data = excluded.data, created_at = excluded.created_at",
                (
                    snapshot.aggregate_id,
                    snapshot.aggregate_type,
                    snapshot.version,
                    snapshot.schema_key,
                    snapshot.data,
                    time.time_ns() // 1000,
                ),
            )

    def latest_snapshot(
        self, aggregate_id: str, at_or_before_version: int | None = None
    ) -> Snapshot | None:
        check_lookup(self.path, "latest_snapshot", ("aggregate_id", aggregate_id))
        bound = snapshot_version_bound(
            "latest_snapshot", "at_or_before_version", at_or_before_version
        )
        sql = f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE aggregate_id = %s"
        params: list[object] = [aggregate_id]
        if bound is not None:
            sql += " AND version <= %s"
            params.append(bound)
        with self.reading() as conn:
            row = conn.execute(sql + " ORDER BY version DESC LIMIT 1", params).fetchone()
        return _snapshot(row) if row else None

    def list_snapshots(self, aggregate_id: str) -> list[Snapshot]:
        check_lookup(self.path, "list_snapshots", ("aggregate_id", aggregate_id))
        with self.reading() as conn:
            rows = conn.execute(
                f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE aggregate_id = %s "
                "ORDER BY version",
                (aggregate_id,),
            ).fetchall()
        return [_snapshot(r) for r in rows]

    def delete_snapshots_older_than(self, aggregate_id: str, version: int) -> int:
        check_lookup(self.path, "delete_snapshots_older_than", ("aggregate_id", aggregate_id))
        last = last_version_older_than("delete_snapshots_older_than", version)
        with self.reading() as conn:
            return conn.execute(
                "DELETE FROM snapshots WHERE aggregate_id = %s AND version <= %s",
                (aggregate_id, last),
            ).rowcount

    def delete_snapshots_of_type(self, aggregate_type: str) -> int:
        check_lookup(self.path, "delete_snapshots_of_type", ("aggregate_type", aggregate_type))
        with self.reading() as conn:
            return conn.execute(
                "DELETE FROM snapshots WHERE aggregate_type = %s", (aggregate_type,)
            ).rowcount

    def keep_last_snapshots(self, aggregate_id: str, count: int) -> int:
        """Delete all but the newest ``count`` snapshots of an aggregate."""
        keep = snapshots_to_keep("keep_last_snapshots", count)
        check_lookup(self.path, "keep_last_snapshots", ("aggregate_id", aggregate_id))
        with self.reading() as conn:
            return conn.execute(
                "DELETE FROM snapshots WHERE aggregate_id = %s AND version NOT IN ("
                " SELECT version FROM snapshots WHERE aggregate_id = %s"
                " ORDER BY version DESC LIMIT %s)",
                (aggregate_id, aggregate_id, keep),
            ).rowcount

    def snapshot_stats(self) -> SnapshotStats:
        with self.reading() as conn:
            count, aggregates, total = conn.execute(  # type: ignore[misc]
                "SELECT COUNT(*), COUNT(DISTINCT aggregate_id), "
                "COALESCE(SUM(OCTET_LENGTH(data)), 0) FROM snapshots"
            ).fetchone()
        return SnapshotStats(int(count), int(aggregates), int(total))

    # -- checkpoints ---------------------------------------------------------------------------
    def load_checkpoint(self, name: str) -> int:
        check_checkpoint_name("load_checkpoint", name)
        check_lookup(self.path, "load_checkpoint", ("checkpoint name", name))
        with self.reading() as conn:
            return read_progress(conn, name)[0]

    def load_scanned_position(self, name: str) -> int:
        check_checkpoint_name("load_scanned_position", name)
        check_lookup(self.path, "load_scanned_position", ("checkpoint name", name))
        with self.reading() as conn:
            return read_progress(conn, name)[1]

    def save_checkpoint(
        self, name: str, position: int, *, scanned_position: int | None = None
    ) -> None:
        check_checkpoint(self.path, name, position, scanned_position)
        check_lookup(self.path, "save_checkpoint", ("checkpoint name", name))
        with self.reading() as conn:
            write_checkpoint(conn, name, position, scanned_position)

    def delete_checkpoint(self, name: str) -> None:
        check_checkpoint_name("delete_checkpoint", name)
        check_lookup(self.path, "delete_checkpoint", ("checkpoint name", name))
        with self.reading() as conn:
            conn.execute("DELETE FROM projection_checkpoints WHERE name = %s", (name,))

    def list_checkpoints(self) -> dict[str, int]:
        with self.reading() as conn:
            rows = conn.execute("SELECT name, position FROM projection_checkpoints").fetchall()
        return {name: int(position) for name, position in rows}
