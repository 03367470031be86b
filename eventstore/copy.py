"""``eventstore copy SRC_URL DST_URL``: a whole store from one adapter to another.

Copies the events (with their positions and ids), snapshots, command records,
unique constraints, the process managers' tables (state, timeouts, outbox) and
the framework's own checkpoints and dead letters (process managers'
``process:<name>``, relays' ``relay:<stream>``) from SQLite to PostgreSQL or
back (or between two stores of one kind). It sits above the adapters, like
``stores.py``, and talks SQL to each side.

- Any other checkpoint belongs to a projection whose read model may be tables
  in the store's own file or schema, which the copy cannot know: it is not
  copied (nor its dead letters), and the copy names it, so that projection
  rebuilds from the start in the copy instead of claiming rows it lacks.
- A table a store does not have yet (the process tables before a process
  manager ran, SQLite's dead letters before a read model opened) copies as
  empty; the destination gets the tables the source has.
- The source is read in one snapshot: a read transaction on SQLite,
  ``REPEATABLE READ`` on PostgreSQL.
- A destination that is the source (one file, however spelled or linked; one
  PostgreSQL schema of one database on one server) is refused before anything
  opens either.
- A source that is missing or holds no event store is refused before anything
  opens it as a store (which would create one there); a store of an older
  schema version (its process tables too) is migrated first, as opening it
  would, since the copy reads this version's columns.
- A destination that holds anything is refused, unless it holds an
  interrupted copy: the events are copied in committed chunks, marked by the
  table ``eventstore_copy`` (which names the source without its password), so a
  second run resumes after the last chunk. The other tables go in one final
  transaction that also removes the mark.
- The destination's position sequence is set after the explicit positions.
- At the end the row counts and a SHA-256 over every copied table's rows in key
  order (the outbox in sending order) must match on both sides, or the copy
  fails naming the table.
- A failure of either side (a full disk, a damaged file, a lost connection) is a
  ``CopySideError`` naming the side, its file or URL, the cause and the way out;
  the driver's error is its ``__cause__``. Running the same command again resumes.
"""

from __future__ import annotations

import abc
import contextlib
import getpass
import hashlib
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlencode

from .core.errors import (
    COPY_MARK,
    CorruptDatabaseError,
    EventStoreError,
    NotADatabaseError,
    ReadOnlyStoreError,
    StorageError,
    StorageFullError,
    StoreBusyError,
    StoreURLError,
    redact_secrets,
    redact_url,
)
from .stores import url_scheme

#: table -> (columns, key columns); events first, in position order.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "events": (
        (
            "position",
            "event_id",
            "aggregate_id",
            "aggregate_type",
            "event_type",
            "version",
            "timestamp",
            "data",
            "metadata",
            "constraints",
        ),
        ("position",),
    ),
    "unique_constraints": (("index_name", "value", "aggregate_id"), ("index_name", "value")),
    "processed_commands": (
        ("command_id", "aggregate_id", "event_ids", "processed_at", "expires_at", "unit"),
        ("command_id",),
    ),
    "snapshots": (
        ("aggregate_id", "version", "aggregate_type", "schema_key", "data", "created_at"),
        ("aggregate_id", "version"),
    ),
    "projection_checkpoints": (
        ("name", "position", "updated_at", "scanned_position"),
        ("name",),
    ),
    "projection_dead_letters": (
        (
            "projection",
            "position",
            "event_id",
            "event_type",
            "aggregate_id",
            "error_type",
            "message",
            "traceback",
            "failed_at",
        ),
        ("projection", "position"),
    ),
    "process_state": (
        ("manager", "process_id", "state", "finished", "updated_at", "tenant"),
        ("manager", "process_id"),
    ),
    "process_timeouts": (
        ("manager", "process_id", "step", "due_at"),
        ("manager", "process_id", "step"),
    ),
    # Pending in (created_at, insertion) order: copied in that order, so the destination's
    # own order (SQLite's rowid, PostgreSQL's seq) is the source's. A runner's claim on a
    # command (claimed_until, a lease on one machine's or server's clock) is not copied:
    # the copy's runner sends what is pending, its command ids deduplicating.
    "process_outbox": (
        (
            "command_id",
            "manager",
            "process_id",
            "step",
            "command_type",
            "data",
            "created_at",
            "tenant",
        ),
        ("command_id",),
    ),
}
#: The process manager's tables (``eventstore/sqlite/process_runner.py`` and
#: ``eventstore/postgres/process_runner.py``), made by its first run.
PROCESS_TABLES = ("process_state", "process_timeouts", "process_outbox")
#: Tables a store may not have yet (SQLite makes its dead letters with its first read
#: model): a missing one copies as empty.
OPTIONAL_TABLES = frozenset({"projection_dead_letters", *PROCESS_TABLES})
#: Checkpoints whose state the copy carries: process managers' (their tables are copied)
#: and relays' (what they published is in the stream, which they read on resuming).
FRAMEWORK_CHECKPOINTS = ("process:", "relay:")
#: Columns that PostgreSQL keeps as BOOLEAN and SQLite as 0/1: read, compared as 0/1.
_BOOLEANS = {"process_state": frozenset({"finished"})}
CHUNK = 5_000
_MARK = COPY_MARK
#: How long a SQLite side waits for another process's lock (seconds).
_BUSY_WAIT = 30.0
#: SQLite's primary result codes for a lock it waited on in vain.
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
#: What every side's failure ends with: the copy resumes where it stopped.
_AGAIN = "run the same command again (a copy that stopped resumes after its last chunk)"


def is_framework_checkpoint(name: str) -> bool:
    """Whether the copy carries this checkpoint (see ``FRAMEWORK_CHECKPOINTS``)."""
    return name.startswith(FRAMEWORK_CHECKPOINTS)


class CopyError(EventStoreError):
    """A copy that cannot start or did not verify; the message says what and what to do."""

    def __init__(self, cause: str, fix: str) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"eventstore copy: {cause}. {fix}")


class CopySideError(CopyError):
    """One side failed during the copy (a full disk, a damaged file, a lost connection).

    ``side`` is ``"source"`` or ``"destination"``, ``url`` its URL (without the password),
    ``error`` what the adapter made of the driver's error (a ``StorageError`` where it
    knows the cause, else the driver's error itself, which is also ``__cause__``).
    """

    def __init__(self, side: str, url: str, error: BaseException, cause: str, fix: str) -> None:
        self.side = side
        self.url = url
        self.error = error
        super().__init__(cause, fix)


@dataclass
class CopyReport:
    counts: dict[str, int] = field(default_factory=dict)
    checksum: str = ""
    resumed_after: int = 0
    #: checkpoints not copied, name -> position in the source (their projections rebuild)
    skipped_checkpoints: dict[str, int] = field(default_factory=dict)
    #: dead letters not copied (of those projections), projection name -> how many
    skipped_dead_letters: Counter[str] = field(default_factory=Counter)


class _Side(abc.ABC):
    """One store, spoken to in SQL: SQLite or PostgreSQL."""

    mark: str  # the parameter marker
    outbox_order: str  # the column that orders process_outbox rows of one created_at

    def __init__(self, url: str, *, source: bool) -> None:
        self.url = url
        self.source = source
        self.side = "source" if source else "destination"

    @abc.abstractmethod
    def where(self) -> str:
        """This side in a message: ``the destination 'sqlite:///x.db' (file '/abs/x.db')``."""

    @abc.abstractmethod
    def failed(self, exc: BaseException) -> CopySideError:
        """The driver's (or the adapter's) error as one that names this side and the fix."""

    @abc.abstractmethod
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions of this side's driver that ``failures`` turns into its own."""

    @contextmanager
    def failures(self) -> Iterator[None]:
        """A driver's error in the block, or the adapter's ``StorageError`` (opening the
        store), becomes a ``CopySideError`` naming this side; others pass unchanged."""
        try:
            yield
        except CopyError:
            raise
        except BaseException as exc:
            if isinstance(exc, (*self.driver_errors(), StorageError)):
                raise self.failed(exc) from exc
            raise

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """See the SQLite and PostgreSQL sides."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """See the SQLite and PostgreSQL sides."""

    @abc.abstractmethod
    def transaction(self, snapshot: bool = False) -> Any:
        """See the SQLite and PostgreSQL sides."""

    @abc.abstractmethod
    def close(self) -> None:
        """See the SQLite and PostgreSQL sides."""

    @abc.abstractmethod
    def has_mark(self) -> bool:
        """See the SQLite and PostgreSQL sides."""

    @abc.abstractmethod
    def tables(self) -> set[str]:
        """The names of the store's tables."""

    @abc.abstractmethod
    def create_tables(self, names: set[str]) -> None:
        """Create the optional tables among ``names`` that are missing, as the adapter
        would (the process tables all three at once)."""

    def writable(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> Any:
        """The rows as this side's columns take them (SQLite takes 0/1 for a boolean)."""
        return rows

    def set_sequence(self) -> None:
        """Make the next position follow the copied ones (SQLite's AUTOINCREMENT does it)."""
        return None

    def check_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Refuse rows this side cannot hold, before any is written (SQLite holds all)."""
        return None

    def q(self, sql: str) -> str:
        return sql.replace("?", self.mark)


class _SQLiteSide(_Side):
    mark = "?"
    outbox_order = "rowid"

    def __init__(self, url: str, *, source: bool) -> None:
        super().__init__(url, source=source)
        from .sqlite import SQLiteEventStore
        from .sqlite.urls import sqlite_path

        path, _ = sqlite_path(url) if url_scheme(url) else (url, {})
        self.path = path
        self.file = _sqlite_file(path)
        with self.failures():
            if source:
                _check_sqlite_source(url, path)
            # Create the destination's schema; bring an older store (either side) up to
            # this version's, whose columns the copy reads and writes.
            SQLiteEventStore(path, during_copy=True).close()
            uri = path.startswith("file:")
            self.conn = sqlite3.connect(path, uri=uri, isolation_level=None, timeout=_BUSY_WAIT)
        try:
            found = self.tables() & set(PROCESS_TABLES)
            if found:  # process tables of an older release lack columns: add them
                self.create_tables(found)
        except BaseException:
            self.conn.close()
            raise

    def where(self) -> str:
        named = f"the {self.side} {redact_url(self.url)!r}"
        return f"{named} (file {self.file!r})" if self.file and self.file != self.url else named

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def failed(self, exc: BaseException) -> CopySideError:
        """Through the adapter's translation (``storage_error``), then this side's words."""
        from .sqlite.connections import storage_error

        error = exc if isinstance(exc, StorageError) else storage_error(exc, self.path, self.file)
        code = getattr(exc, "sqlite_errorcode", None)
        if error is exc and code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            error = StoreBusyError(self.path, _BUSY_WAIT, str(exc))
        where = self.where()
        if isinstance(error, StorageFullError):
            cause = (
                f"{where}: the disk holding it (or the database's size limit) is full, so "
                "the last write was rolled back"
            )
            fix = f"Free space on that disk, then {_AGAIN}."
        elif isinstance(error, StoreBusyError):
            waited = _BUSY_WAIT if error.busy_timeout is None else error.busy_timeout
            cause = (
                f"{where}: another process held a lock on it for over {waited:g} s "
                f"({error.detail}), so the copy gave up waiting"
            )
            fix = f"Let that process finish (or stop it), then {_AGAIN}."
        elif isinstance(error, NotADatabaseError):
            cause = f"{where}: {error.cause}"
            fix = (
                "Check the source URL: it must name an event store's file."
                if self.source
                else "Check the destination URL: name a new file, or the file of an "
                "unfinished copy to resume it."
            )
        elif isinstance(error, ReadOnlyStoreError) and not error.folder and not self.source:
            cause = f"{where}: {error.cause}"
            fix = _then_again("Make the file writable for this user, or copy to another file")
        elif isinstance(error, CorruptDatabaseError) and not self.source:
            cause = f"{where}: {error.cause}"
            fix = "Delete the destination (the copy in it cannot be trusted) and copy again."
        elif isinstance(error, StorageError):
            cause = f"{where}: {error.cause}"
            fix = error.fix if isinstance(error, CorruptDatabaseError) else _then_again(error.fix)
        else:  # about the statement, not the file: only someone else's change explains it
            cause = f"{where}: SQLite failed ({type(exc).__name__}: {exc})"
            fix = _then_again(
                "Check that nothing else writes to the file during the copy (or changed its "
                "tables)."
            )
        return CopySideError(self.side, redact_url(self.url), error, cause, fix)

    def tables(self) -> set[str]:
        return {row[0] for row in self.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def create_tables(self, names: set[str]) -> None:
        from .sqlite import SQLiteEventStore, SQLiteReadModel
        from .sqlite.process_runner import SQLiteProcessTables

        with self.failures(), SQLiteEventStore(self.path, during_copy=True) as store:
            read_model = SQLiteReadModel(store)  # makes the dead letters table
            if names & set(PROCESS_TABLES):
                tables = SQLiteProcessTables(read_model)
                with tables.transaction() as conn:
                    tables.create(conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.failures():
            return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.failures():
            self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self, snapshot: bool = False) -> Iterator[None]:
        """A transaction; what fails in the block (the other side included) passes as it
        is, what fails in BEGIN or COMMIT names this side."""
        try:
            with self.failures():
                self.conn.execute("BEGIN" if snapshot else "BEGIN IMMEDIATE")
                if snapshot:  # a read transaction's snapshot starts with its first read
                    self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
            yield
            with self.failures():
                self.conn.execute("COMMIT")
        except BaseException:
            # A full disk or an I/O error may have rolled it back already.
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise

    def has_mark(self) -> bool:
        return bool(
            self.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (_MARK,))
        )

    def close(self) -> None:
        self.conn.close()


def _then_again(fix: str) -> str:
    """``fix``, then the advice to run the copy again."""
    return f"{fix.rstrip().rstrip('.')}; then {_AGAIN}."


def _sqlite_file(path: str) -> str | None:
    """The absolute path of the file a SQLite path or ``file:`` URI names (None in memory)."""
    if path.startswith("file:"):
        name, _, query = path[5:].partition("#")[0].partition("?")
        if name.startswith("//"):  # file://[localhost]/abs/path
            name = "/" + name[2:].partition("/")[2]
        name = unquote(name)
        if ("mode", "memory") in parse_qsl(query):
            return None
    else:
        name = path
    if name in ("", ":memory:"):
        return None
    return os.path.abspath(name)


def _check_sqlite_source(url: str, path: str) -> None:
    """Refuse a source that is missing or holds no event store, reading it read-only.

    Opening it as a store would create one there (and report a verified copy of
    nothing), so this looks first, without writing.
    """
    fix = "Check the source URL (sqlite:///relative.db or sqlite:////absolute/path.db)."
    if path == ":memory:":
        raise CopyError(f"the source {url!r} is a new in-memory store, which is empty", fix)
    if path.startswith("file:"):
        base, _, query = path.partition("?")
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "mode"]
        read_only = f"{base}?{urlencode([*kept, ('mode', 'ro')])}"
    elif not os.path.isfile(path):
        raise CopyError(f"the source {url!r} does not exist (no file {path!r})", fix)
    else:
        read_only = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(read_only, uri=True)
        try:
            tables = {
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            conn.close()
    except sqlite3.Error as exc:
        from .sqlite.connections import storage_error

        if isinstance(storage_error(exc, path), StorageError):
            raise  # about the file (damaged, not a database): the side names it
        raise CopyError(f"cannot read the source {url!r} as SQLite ({exc})", fix) from exc
    if "events" not in tables:
        raise CopyError(
            f"the source {url!r} is not an event store (it has no events table; tables: "
            f"{', '.join(sorted(tables)) or 'none'})",
            fix,
        )


class _PostgresSide(_Side):
    mark = "%s"
    outbox_order = "seq"

    def __init__(self, url: str, *, source: bool) -> None:
        super().__init__(url, source=source)
        import psycopg

        from .postgres import PostgresEventStore
        from .postgres.urls import postgres_dsn

        dsn, options = postgres_dsn(url)
        self.dsn = dsn
        self.schema = str(options.get("schema", "eventstore"))
        with self.failures():
            if source:
                self._refuse_unless_store(dsn)
            # Create the destination's schema; bring an older store (either side) up to
            # this version's, whose columns the copy reads and writes. A schema holding an
            # unfinished copy is opened too: copy_store resumes it, or refuses it as a source.
            PostgresEventStore(dsn, schema=self.schema, pool_size=1, during_copy=True).close()
            self.conn = psycopg.connect(
                dsn, autocommit=True, options=f"-c search_path={self.schema}"
            )

    def where(self) -> str:
        named = f"the {self.side} {redact_url(self.url)!r}"
        return named if "schema=" in self.url else f"{named} (schema {self.schema!r})"

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    def failed(self, exc: BaseException) -> CopySideError:
        import psycopg

        where = self.where()
        if isinstance(exc, StorageError):  # the adapter's, opening the store
            cause, fix = f"{where}: {exc.cause}", _then_again(exc.fix)
        else:
            words = redact_secrets(_one_line(exc), self.url)
            state = str(getattr(exc, "sqlstate", None) or "")
            if state == "53100":  # disk_full
                cause = f"{where}: the server's disk is full ({words})"
                fix = f"Free space on the server's disk, then {_AGAIN}."
            elif state.startswith("53"):  # insufficient resources (memory, connections)
                cause = f"{where}: the server is short of resources ({words})"
                fix = f"Let the server recover (or raise its limits), then {_AGAIN}."
            elif isinstance(exc, psycopg.OperationalError):
                cause = f"{where}: the connection to the server failed ({words})"
                fix = f"Check that the server runs and can be reached, then {_AGAIN}."
            else:
                cause = f"{where}: PostgreSQL refused the copy's statement ({words})"
                fix = _then_again("Correct what it names")
        return CopySideError(self.side, redact_url(self.url), exc, cause, fix)

    def _refuse_unless_store(self, dsn: str) -> None:
        """Refuse a source schema without an events table, before anything creates one there."""
        import psycopg

        try:
            conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise CopyError(
                f"cannot connect to the source {redact_url(self.url)!r} ({cause})",
                "Check that the server runs and the URL's host, port, user and database.",
            ) from exc
        with conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = 'events'",
                (self.schema,),
            ).fetchall()
        if not found:
            raise CopyError(
                f"the source {redact_url(self.url)!r} is not an event store (schema "
                f"{self.schema!r} has no events table)",
                "Check the source URL and its ?schema= (the default schema is eventstore).",
            )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.failures():
            cursor = self.conn.execute(self.q(sql).encode(), params)
            return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.failures(), self.conn.cursor() as cursor:
            cursor.executemany(self.q(sql).encode(), rows)

    @contextmanager
    def transaction(self, snapshot: bool = False) -> Iterator[None]:
        """A transaction; what fails in BEGIN or COMMIT names this side (what fails in the
        block has named its own side already, or is not the driver's)."""
        import psycopg

        level = psycopg.IsolationLevel.REPEATABLE_READ if snapshot else None
        with self.failures():
            self.conn.isolation_level = level
            try:
                with self.conn.transaction():
                    yield
            finally:
                with contextlib.suppress(psycopg.Error):  # a lost connection keeps its error
                    self.conn.isolation_level = None

    def check_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """PostgreSQL text cannot hold a NUL byte, which SQLite stores: say which row has one
        (psycopg's error names neither), before the page is written."""
        for row in rows:
            for column, value in zip(columns, row, strict=True):
                if isinstance(value, str) and "\x00" in value:
                    raise CopyError(
                        f"{table} row {columns[0]}={row[0]!r} holds a NUL byte ('\\x00') in "
                        f"{column} ({value[:60]!r}), which PostgreSQL text cannot hold",
                        "Copy into a SQLite store instead, or rewrite that value in the "
                        "source first (nothing of this page was written)",
                    )

    def has_mark(self) -> bool:
        return bool(
            self.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                (self.schema, _MARK),
            )
        )

    def tables(self) -> set[str]:
        return {
            row[0]
            for row in self.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                (self.schema,),
            )
        }

    def create_tables(self, names: set[str]) -> None:
        # The dead letters table is in the schema from its first migration.
        if not names & set(PROCESS_TABLES):
            return
        from .postgres import PostgresEventStore, PostgresReadModel
        from .postgres.process_runner import PostgresProcessTables

        with (
            self.failures(),
            PostgresEventStore(
                self.dsn, schema=self.schema, pool_size=1, during_copy=True
            ) as store,
        ):
            tables = PostgresProcessTables(PostgresReadModel(store))
            with tables.transaction() as conn:
                tables.create(conn)

    def writable(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> Any:
        booleans = _BOOLEANS.get(table)
        if not booleans:
            return rows
        flags = [column in booleans for column in columns]
        return [
            tuple(
                bool(v) if flag and v is not None else v for v, flag in zip(row, flags, strict=True)
            )
            for row in rows
        ]

    def set_sequence(self) -> None:
        self.execute(
            "SELECT setval('events_position_seq', GREATEST(MAX(position), 1), "
            "MAX(position) IS NOT NULL) FROM events"
        )

    def close(self) -> None:
        self.conn.close()


def _one_line(exc: BaseException) -> str:
    """A driver's message on one line (libpq's cause, then its hint)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _open(url: str, *, source: bool) -> _Side:
    scheme = url_scheme(url)
    if scheme is None and url.lower().startswith("sqlite:"):  # sqlite:/x.db, a typo
        raise StoreURLError(
            url,
            "a SQLite URL starts with sqlite:// (this one would be read as a file path)",
            "Write sqlite:///relative.db or sqlite:////absolute/path.db.",
        )
    if scheme in (None, "sqlite", "file"):
        return _SQLiteSide(url, source=source)
    if scheme in ("postgresql", "postgres"):
        return _PostgresSide(url, source=source)
    raise StoreURLError(
        url, f"eventstore copy cannot read {scheme}://", "Use sqlite:// or postgresql://."
    )


def _same_store(source_url: str, destination_url: str) -> str | None:
    """How the two URLs name one store (one file, one schema of one database on one
    server), or None; a URL that does not parse is left to ``_open`` to name."""
    file, other_file = _sqlite_location(source_url), _sqlite_location(destination_url)
    if file is not None and other_file is not None:
        real = [os.path.realpath(file), os.path.realpath(other_file)]
        if real[0] == real[1]:
            return f"both name the file {real[1]!r}"
        with contextlib.suppress(OSError):
            if os.path.samefile(real[0], real[1]):
                return f"{real[0]!r} and {real[1]!r} are one file (hard links)"
        return None
    first, second = _postgres_location(source_url), _postgres_location(destination_url)
    if first is None or second is None:
        return None
    (dsn, (host, port, database, schema)), (other_dsn, other) = first, second
    where = f"schema {schema!r} of database {database!r}"
    if (host, port, database, schema) == other:
        return f"both name {where} on {host or 'the local socket'}:{port}"
    if (database, schema) != other[2:]:
        return None
    # One database name and schema on hosts or ports spelled differently (localhost and
    # 127.0.0.1, say): ask each server who it is.
    server = _postgres_server(dsn)
    if server is not None and server == _postgres_server(other_dsn):
        return f"both reach {where} on one server, {host}:{port} being {other[0]}:{other[1]}"
    return None


def _sqlite_location(url: str) -> str | None:
    """The absolute path of the file a SQLite URL (or path) names; None for another
    store, one in memory, or a URL that does not parse."""
    scheme = url_scheme(url)
    if scheme is None and url.lower().startswith("sqlite:"):  # a typo _open names
        return None
    if scheme not in (None, "sqlite", "file"):
        return None
    from .sqlite.urls import sqlite_path

    try:
        path = sqlite_path(url)[0] if scheme else url
    except StoreURLError:
        return None
    return _sqlite_file(path)


def _postgres_location(url: str) -> tuple[str, tuple[str, str, str, str]] | None:
    """The DSN and (host, port, database, schema) a PostgreSQL URL names, libpq's
    defaults filled in; None for another store or a URL that does not parse."""
    if url_scheme(url) not in ("postgresql", "postgres"):
        return None
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        from .postgres.urls import postgres_dsn
    except ImportError:  # the postgres extra is missing: _open says so
        return None
    try:
        dsn, options = postgres_dsn(url)
        params = conninfo_to_dict(dsn)
    except (StoreURLError, psycopg.Error):
        return None
    env = os.environ
    host = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or "")
    port = str(params.get("port") or env.get("PGPORT") or "5432")
    user = str(params.get("user") or env.get("PGUSER") or _login())
    database = str(params.get("dbname") or env.get("PGDATABASE") or user)
    return dsn, (host.lower(), port, database, str(options.get("schema", "eventstore")))


def _login() -> str:
    """The user libpq connects as by default (its database's default name too)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _postgres_server(dsn: str) -> tuple[Any, ...] | None:
    """Who the server at ``dsn`` is (its start time, port and database); None when it
    cannot be asked (``_open`` then says why)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    timeout: dict[str, Any] = {}
    if "connect_timeout" not in conninfo_to_dict(dsn):
        timeout["connect_timeout"] = 10
    try:
        with psycopg.connect(dsn, autocommit=True, **timeout) as conn:
            row = conn.execute(
                "SELECT pg_postmaster_start_time(), current_setting('port'), current_database()"
            ).fetchone()
    except psycopg.Error:
        return None
    return tuple(row) if row else None


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as both sides compare it: bytes for BYTEA's memoryviews, 0/1 for booleans."""
    return tuple(
        bytes(v) if isinstance(v, memoryview) else int(v) if isinstance(v, bool) else v for v in row
    )


def _copied(table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows of ``table`` the copy carries: of checkpoints and dead letters, only the
    framework's own (``FRAMEWORK_CHECKPOINTS``); of other tables, all."""
    if table in ("projection_checkpoints", "projection_dead_letters"):
        return [row for row in rows if is_framework_checkpoint(row[0])]
    return rows


def _rows(side: _Side, table: str, present: set[str]) -> list[tuple[Any, ...]]:
    """The rows of ``table`` the copy carries, in copy order (none when the side lacks it)."""
    if table not in present:
        return []
    columns, key = TABLES[table]
    order = ", ".join(key) if table != "process_outbox" else f"created_at, {side.outbox_order}"
    rows = side.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
    return _copied(table, [_plain(row) for row in rows])


def _digest(side: _Side, counts: dict[str, int]) -> str:
    """SHA-256 over every copied table's rows in copy order (events paged), filling
    ``counts``; a table the side lacks counts as empty."""
    digest = hashlib.sha256()
    present = side.tables()
    for table, (columns, _) in TABLES.items():
        n = 0
        if table == "events":
            after = 0
            while True:
                page = side.execute(
                    f"SELECT {', '.join(columns)} FROM events WHERE position > ? "
                    "ORDER BY position LIMIT ?",
                    (after, CHUNK),
                )
                for row in page:
                    digest.update(repr(_plain(row)).encode())
                n += len(page)
                if len(page) < CHUNK:
                    break
                after = page[-1][0]
        else:
            for row in _rows(side, table, present):
                digest.update(repr(row).encode())
                n += 1
        counts[table] = n
        digest.update(f"|{table}:{n}|".encode())
    return digest.hexdigest()


def copy_store(
    source_url: str,
    destination_url: str,
    *,
    progress: Callable[[str], None] | None = None,
    chunk: int = CHUNK,
) -> CopyReport:
    """Copy a whole store (see the module's docs); returns the verified counts and checksum."""
    say = progress or (lambda text: None)
    same = _same_store(source_url, destination_url)
    if same:  # before anything opens either (which would write, and then refuse)
        raise CopyError(
            f"source and destination are the same store: {same}",
            "Name a different destination: a new SQLite file, or an empty PostgreSQL schema "
            "(?schema=NAME). Nothing was written.",
        )
    source = _open(source_url, source=True)
    try:
        if source.has_mark():  # before the destination is made
            raise CopyError(
                f"the source {redact_url(source_url)!r} holds a copy that has not finished (the "
                f"table {_MARK} marks it), so it is not a whole store",
                "Finish that copy first (run the command that made it again), then copy from it.",
            )
        destination = _open(destination_url, source=False)
    except BaseException:
        source.close()
        raise
    try:
        return _copy(source, destination, say, chunk)
    except CopySideError as exc:
        if exc.side == "source" and isinstance(exc.error, CorruptDatabaseError):
            # Resuming would go on from a different (restored) file: start anew.
            raise CopySideError(
                exc.side,
                exc.url,
                exc.error,
                exc.cause,
                f"{exc.fix.rstrip('.')}; the destination {redact_url(destination_url)!r} "
                "holds the unfinished copy: delete it, then copy from the restored file.",
            ) from exc.__cause__
        raise
    finally:
        source.close()
        destination.close()


def _copy(source: _Side, destination: _Side, say: Callable[[str], None], chunk: int) -> CopyReport:
    """``copy_store`` between two open sides."""
    source_url, destination_url = source.url, destination.url
    report = CopyReport()
    resuming = destination.has_mark()
    if not resuming:
        present = destination.tables()
        filled = [
            t for t in TABLES if t in present and destination.execute(f"SELECT 1 FROM {t} LIMIT 1")
        ]
        if filled:
            raise CopyError(
                f"the destination {redact_url(destination_url)!r} is not empty (it has "
                f"rows in {', '.join(filled)})",
                "Copy into a new, empty store, or delete the destination first.",
            )
        destination.execute(f"CREATE TABLE {_MARK} (source TEXT NOT NULL)")
        # Never the password: the mark stays in the destination if the copy is interrupted.
        destination.execute(f"INSERT INTO {_MARK} VALUES (?)", (redact_url(source_url),))
    after = int(destination.execute("SELECT COALESCE(MAX(position), 0) FROM events")[0][0])
    report.resumed_after = after if resuming else 0
    if resuming:
        say(f"resuming after position {after:,}")
    columns = TABLES["events"][0]
    insert = f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    with source.transaction(snapshot=True):
        head = int(source.execute("SELECT COALESCE(MAX(position), 0) FROM events")[0][0])
        total = int(source.execute("SELECT COUNT(*) FROM events")[0][0])
        done = int(destination.execute("SELECT COUNT(*) FROM events")[0][0])
        while after < head:
            page = source.execute(
                f"SELECT {', '.join(columns)} FROM events WHERE position > ? AND "
                "position <= ? ORDER BY position LIMIT ?",
                (after, head, chunk),
            )
            if not page:
                break
            destination.check_rows("events", columns, page)
            with destination.transaction():
                destination.executemany(destination.q(insert), page)
            after, done = page[-1][0], done + len(page)
            say(f"events {done:,}/{total:,}")
        in_source = source.tables()
        checkpoints = source.execute("SELECT name, position FROM projection_checkpoints")
        report.skipped_checkpoints = {
            str(name): int(position)
            for name, position in sorted(checkpoints)
            if not is_framework_checkpoint(str(name))
        }
        if "projection_dead_letters" in in_source:
            report.skipped_dead_letters = Counter(
                str(row[0])
                for row in source.execute("SELECT projection FROM projection_dead_letters")
                if not is_framework_checkpoint(str(row[0]))
            )
        # The destination gets the optional tables the source has (and a process
        # manager's checkpoint, its tables).
        wanted = in_source & OPTIONAL_TABLES
        if any(str(name).startswith("process:") for name, _ in checkpoints):
            wanted |= set(PROCESS_TABLES)
        present = destination.tables()
        if wanted - present:
            destination.create_tables(wanted - present)
            present = destination.tables()
        with destination.transaction():
            for table in TABLES:
                if table == "events" or table not in present:
                    continue
                cols = TABLES[table][0]
                rows = _rows(source, table, in_source)
                destination.check_rows(table, cols, rows)
                destination.execute(f"DELETE FROM {table}")
                if rows:
                    destination.executemany(
                        destination.q(
                            f"INSERT INTO {table} ({', '.join(cols)}) "
                            f"VALUES ({', '.join('?' * len(cols))})"
                        ),
                        destination.writable(table, cols, rows),
                    )
                say(f"{table} {len(rows):,}")
            destination.set_sequence()
            destination.execute(f"DROP TABLE {_MARK}")
        if report.skipped_checkpoints or report.skipped_dead_letters:
            say(_skipped_text(report))
        expected: dict[str, int] = {}
        source_sum = _digest(source, expected)
    copied: dict[str, int] = {}
    destination_sum = _digest(destination, copied)
    if (expected, source_sum) != (copied, destination_sum):
        differing = [t for t in TABLES if expected.get(t) != copied.get(t)] or ["(contents)"]
        raise CopyError(
            f"the copy does not match its source: counts or checksum differ in "
            f"{', '.join(differing)} (source {expected}, destination {copied})",
            "Nothing else wrote to the destination? Delete it and copy again.",
        )
    report.counts, report.checksum = copied, destination_sum
    say(f"verified: {sum(copied.values()):,} rows, sha256 {destination_sum[:16]}")
    return report


def _skipped_text(report: CopyReport) -> str:
    """What the copy left out of the projections' tables, and what that means."""
    letters = report.skipped_dead_letters
    names = []
    for name in sorted({*report.skipped_checkpoints, *letters}):
        facts = []
        if name in report.skipped_checkpoints:
            facts.append(f"at {report.skipped_checkpoints[name]:,}")
        if letters.get(name):
            facts.append(f"{letters[name]:,} dead letter{'s' if letters[name] != 1 else ''}")
        names.append(f"{name} ({', '.join(facts)})")
    return (
        f"checkpoints not copied: {'; '.join(names)}. These projections' read models (tables "
        "in the store's file or schema) are not copied, so they rebuild from the start in "
        "the copy (setting aside again what fails); one with outside effects would repeat "
        "them: save its checkpoint in the copy first (store.save_checkpoint(name, position))"
    )


def main(source_url: str, destination_url: str, out: TextIO | None = None) -> int:
    """The CLI's ``copy``: progress on ``out`` (stderr); 0 when verified, else 1 and why."""
    out = out or sys.stderr
    try:
        copy_store(source_url, destination_url, progress=lambda t: print(t, file=out, flush=True))
    except CopyError as exc:
        print(exc, file=out)
        return 1
    except (EventStoreError, OSError) as exc:  # a bad URL, a missing folder, a foreign file
        print(f"eventstore copy: {exc}", file=out)
        return 1
    return 0
