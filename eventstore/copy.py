"""``eventstore copy SRC_URL DST_URL``: a whole store from one adapter to another.

Copies the events (with their positions and ids), snapshots, command records,
unique constraints and checkpoints (the relay's included) from SQLite to
PostgreSQL or back (or between two stores of one kind). It sits above the
adapters, like ``stores.py``, and talks SQL to each side.

- The source is read in one snapshot: a read transaction on SQLite,
  ``REPEATABLE READ`` on PostgreSQL.
- A source that is missing or holds no event store is refused before anything
  opens it as a store (which would create one there); a store of an older
  schema version is migrated first, as opening it would, since the copy reads
  this version's columns.
- A destination that holds anything is refused, unless it holds an
  interrupted copy: the events are copied in committed chunks, marked by the
  table ``eventstore_copy``, so a second run resumes after the last chunk. The
  other tables go in one final transaction that also removes the mark.
- The destination's position sequence is set after the explicit positions.
- At the end the row counts and a SHA-256 over every table's rows in key order
  must match on both sides, or the copy fails naming the table.
"""

from __future__ import annotations

import abc
import hashlib
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode

from .core.errors import EventStoreError, StoreURLError, redact_url
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
}
CHUNK = 5_000
_MARK = "eventstore_copy"


class CopyError(EventStoreError):
    """A copy that cannot start or did not verify; the message says what and what to do."""

    def __init__(self, cause: str, fix: str) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"eventstore copy: {cause}. {fix}")


@dataclass
class CopyReport:
    counts: dict[str, int] = field(default_factory=dict)
    checksum: str = ""
    resumed_after: int = 0


class _Side(abc.ABC):
    """One store, spoken to in SQL: SQLite or PostgreSQL."""

    mark: str  # the parameter marker

    def __init__(self, url: str) -> None:
        self.url = url

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

    def __init__(self, url: str, *, source: bool) -> None:
        super().__init__(url)
        from .sqlite import SQLiteEventStore
        from .sqlite.urls import sqlite_path

        path, _ = sqlite_path(url) if url_scheme(url) else (url, {})
        if source:
            _check_sqlite_source(url, path)
        # Create the destination's schema; bring an older store (either side) up to
        # this version's, whose columns the copy reads and writes.
        SQLiteEventStore(path).close()
        uri = path.startswith("file:")
        self.conn = sqlite3.connect(path, uri=uri, isolation_level=None, timeout=30)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self, snapshot: bool = False) -> Iterator[None]:
        self.conn.execute("BEGIN" if snapshot else "BEGIN IMMEDIATE")
        try:
            if snapshot:  # a read transaction's snapshot starts with its first read
                self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def has_mark(self) -> bool:
        return bool(
            self.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (_MARK,))
        )

    def close(self) -> None:
        self.conn.close()


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
        raise CopyError(f"cannot read the source {url!r} as SQLite ({exc})", fix) from exc
    if "events" not in tables:
        raise CopyError(
            f"the source {url!r} is not an event store (it has no events table; tables: "
            f"{', '.join(sorted(tables)) or 'none'})",
            fix,
        )


class _PostgresSide(_Side):
    mark = "%s"

    def __init__(self, url: str, *, source: bool) -> None:
        super().__init__(url)
        import psycopg

        from .postgres import PostgresEventStore
        from .postgres.urls import postgres_dsn

        dsn, options = postgres_dsn(url)
        self.schema = str(options.get("schema", "eventstore"))
        if source:
            self._refuse_unless_store(dsn)
        # Create the destination's schema; bring an older store (either side) up to
        # this version's, whose columns the copy reads and writes.
        PostgresEventStore(dsn, schema=self.schema, pool_size=1).close()
        self.conn = psycopg.connect(dsn, autocommit=True, options=f"-c search_path={self.schema}")

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
        cursor = self.conn.execute(self.q(sql).encode(), params)
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(self.q(sql).encode(), rows)

    @contextmanager
    def transaction(self, snapshot: bool = False) -> Iterator[None]:
        import psycopg

        level = psycopg.IsolationLevel.REPEATABLE_READ if snapshot else None
        self.conn.isolation_level = level
        try:
            with self.conn.transaction():
                yield
        finally:
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

    def set_sequence(self) -> None:
        self.execute(
            "SELECT setval('events_position_seq', GREATEST(MAX(position), 1), "
            "MAX(position) IS NOT NULL) FROM events"
        )

    def close(self) -> None:
        self.conn.close()


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


def _rows(side: _Side, table: str) -> list[tuple[Any, ...]]:
    columns, key = TABLES[table]
    return side.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)}")


def _digest(side: _Side, counts: dict[str, int]) -> str:
    """SHA-256 over every table's rows in key order (events paged), filling ``counts``."""
    digest = hashlib.sha256()
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
                    digest.update(
                        repr(
                            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        ).encode()
                    )
                n += len(page)
                if len(page) < CHUNK:
                    break
                after = page[-1][0]
        else:
            for row in _rows(side, table):
                digest.update(
                    repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode()
                )
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
    source = _open(source_url, source=True)
    try:
        destination = _open(destination_url, source=False)
    except BaseException:
        source.close()
        raise
    try:
        report = CopyReport()
        resuming = destination.has_mark()
        if not resuming:
            filled = [t for t in TABLES if destination.execute(f"SELECT 1 FROM {t} LIMIT 1")]
            if filled:
                raise CopyError(
                    f"the destination {destination_url!r} is not empty (it has rows in "
                    f"{', '.join(filled)})",
                    "Copy into a new, empty store, or delete the destination first.",
                )
            destination.execute(f"CREATE TABLE {_MARK} (source TEXT NOT NULL)")
            destination.execute(f"INSERT INTO {_MARK} VALUES (?)", (source_url,))
        after = int(destination.execute("SELECT COALESCE(MAX(position), 0) FROM events")[0][0])
        report.resumed_after = after if resuming else 0
        if resuming:
            say(f"resuming after position {after:,}")
        columns = TABLES["events"][0]
        insert = (
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
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
            with destination.transaction():
                for table in TABLES:
                    if table == "events":
                        continue
                    cols = TABLES[table][0]
                    rows = _rows(source, table)
                    destination.check_rows(table, cols, rows)
                    destination.execute(f"DELETE FROM {table}")
                    if rows:
                        destination.executemany(
                            destination.q(
                                f"INSERT INTO {table} ({', '.join(cols)}) "
                                f"VALUES ({', '.join('?' * len(cols))})"
                            ),
                            rows,
                        )
                    say(f"{table} {len(rows):,}")
                destination.set_sequence()
                destination.execute(f"DROP TABLE {_MARK}")
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
    finally:
        source.close()
        destination.close()


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
