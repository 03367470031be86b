"""The raw ``sqlite3`` baseline: the store's SQL work with no framework around it.

Each function here runs the statements ``SQLiteEventStore`` runs for the same
operation, in the same transactions, on the same schema (the store's own
migrations), with the same row values, so the ratio measures what eventstore
adds in Python and nothing else. Values a caller must compute anyway (the
deterministic event id of a command's event, the metadata JSON, the JSON list
of event ids in the command record) are computed here too.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from eventstore.core.ids import deterministic_event_id
from eventstore.sqlite.connections import DEFAULT_CHECKPOINT_PAGES
from eventstore.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from eventstore.sqlite.store import _COMMAND_AND_VERSION

# Same namespace as eventstore.core.ids, so the ids (and index pages) look alike.
_TTL_MICROS = 7 * 86_400 * 1_000_000

EVENT_COLUMNS = (
    "event_id, aggregate_id, aggregate_type, event_type, version, position, timestamp, "
    "data, metadata, constraints"
)
INSERT_EVENT = (
    "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
    "timestamp, data, metadata, constraints) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_COMMAND = (
    "INSERT OR REPLACE INTO processed_commands "
    "(command_id, aggregate_id, event_ids, processed_at, expires_at) VALUES (?, ?, ?, ?, ?)"
)
# The store's own one-statement check of a command's record and the stream's version.
SELECT_COMMAND_AND_VERSION = _COMMAND_AND_VERSION
SELECT_MAX_VERSION = "SELECT MAX(version) FROM events WHERE aggregate_id = ?"


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection set up like the store's: autocommit, WAL, busy timeout, the sync level,
    the WAL checkpoint interval, and the schema after every migration."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {DEFAULT_CHECKPOINT_PAGES}")
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        for migration in MIGRATIONS:
            for statement in migration.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


def save_one_with_command(
    conn: sqlite3.Connection,
    aggregate_id: str,
    expected_version: int,
    command_id: str,
    event_type: str,
    data: bytes,
) -> int:
    """One event under a command id, as ``append(..., command_id=...)`` stores it.

    Statements: BEGIN IMMEDIATE; one SELECT of the command's record and the
    stream's MAX(version); insert the event; insert the command record; COMMIT. (The store looks up
    the command's deterministic event ids only when one of the checks fails,
    to recognise a retry whose record expired, so not on this path.)
    Returns the event's position.
    """
    now = time.time_ns() // 1000
    event_id = deterministic_event_id(command_id, aggregate_id, 0)
    metadata = json.dumps({"c": command_id}, separators=(",", ":"))
    conn.execute("BEGIN IMMEDIATE")
    try:
        actual, *record = conn.execute(
            SELECT_COMMAND_AND_VERSION, (aggregate_id, command_id)
        ).fetchone()
        if record[0] is not None:
            raise RuntimeError("the raw baseline saw a command twice")
        actual = actual or 0
        if actual != expected_version:
            raise RuntimeError(f"raw baseline: version {actual} != expected {expected_version}")
        position = conn.execute(
            INSERT_EVENT,
            (
                event_id,
                aggregate_id,
                "Account",
                event_type,
                expected_version + 1,
                now,
                data,
                metadata,
                None,
            ),
        ).lastrowid
        conn.execute(
            INSERT_COMMAND,
            (
                command_id,
                aggregate_id,
                json.dumps([event_id], separators=(",", ":")),
                now,
                now + _TTL_MICROS,
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(position or 0)


def save_one_plain(
    conn: sqlite3.Connection,
    aggregate_id: str,
    version: int,
    event_id: str,
    event_type: str,
    data: bytes,
) -> int:
    """Only BEGIN IMMEDIATE, the event insert and COMMIT: no command record, no checks.

    Not the store's work: a floor that shows what the idempotency and the
    version check cost in SQLite itself (about eventsourcing's SQL work).
    """
    now = time.time_ns() // 1000
    conn.execute("BEGIN IMMEDIATE")
    try:
        position = conn.execute(
            INSERT_EVENT,
            (event_id, aggregate_id, "Account", event_type, version, now, data, None, None),
        ).lastrowid
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(position or 0)


def append_batch(
    conn: sqlite3.Connection,
    aggregate_id: str,
    expected_version: int,
    events: Sequence[tuple[str, str, bytes]],
) -> int:
    """A batch of (event_id, event_type, data) without a command, as ``append`` stores it.

    Statements: BEGIN IMMEDIATE; MAX(version) check; one ``executemany`` of
    the rows; ``last_insert_rowid()`` (the positions); COMMIT.
    """
    now = time.time_ns() // 1000
    rows = [
        (event_id, aggregate_id, "Account", event_type, expected_version + i, now, data, None, None)
        for i, (event_id, event_type, data) in enumerate(events, start=1)
    ]
    conn.execute("BEGIN IMMEDIATE")
    try:
        actual = conn.execute(SELECT_MAX_VERSION, (aggregate_id,)).fetchone()[0] or 0
        if actual != expected_version:
            raise RuntimeError(f"raw baseline: version {actual} != expected {expected_version}")
        conn.executemany(INSERT_EVENT, rows)
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(last)


def read_all(conn: sqlite3.Connection, page_size: int = 1000) -> int:
    """Every row of the log in position order, paged like ``iter_all``; returns the count."""
    count = 0
    position = 0
    sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
    while True:
        n = 0
        last = None
        for row in conn.execute(sql, (position, page_size)):
            last = row
            n += 1
        count += n
        if n < page_size or last is None:
            return count
        position = last[5]


def load_stream(
    conn: sqlite3.Connection, aggregate_id: str, at_version: int | None = None
) -> tuple[bytes | None, list[tuple[object, ...]]]:
    """What ``Repository.load`` asks of SQLite: the latest usable snapshot, then later events."""
    cols = "aggregate_id, aggregate_type, version, schema_key, data, created_at"
    if at_version is None:
        snap = conn.execute(
            f"SELECT {cols} FROM snapshots WHERE aggregate_id = ? ORDER BY version DESC LIMIT 1",
            (aggregate_id,),
        ).fetchone()
    else:
        snap = conn.execute(
            f"SELECT {cols} FROM snapshots WHERE aggregate_id = ? AND version <= ? "
            "ORDER BY version DESC LIMIT 1",
            (aggregate_id, at_version),
        ).fetchone()
    base = snap[2] if snap else 0
    if at_version is None:
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = ? AND version > ? "
            "ORDER BY version",
            (aggregate_id, base),
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = ? AND version > ? "
            "AND version <= ? ORDER BY version",
            (aggregate_id, base, at_version),
        ).fetchall()
    return (snap[4] if snap else None), rows
