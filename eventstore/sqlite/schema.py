"""The SQLite schema, as numbered migrations applied in order.

``PRAGMA user_version`` records how many have run. Migrations run under
``BEGIN IMMEDIATE`` so two processes opening a new file do not both apply one.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the log, constraints, commands, snapshots, checkpoints
    """
    CREATE TABLE events (
        position        INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id        TEXT    NOT NULL UNIQUE,
        aggregate_id    TEXT    NOT NULL,
        aggregate_type  TEXT    NOT NULL,
        event_type      TEXT    NOT NULL,
        version         INTEGER NOT NULL CHECK (version >= 1),
        timestamp       INTEGER NOT NULL,  -- microseconds since the epoch, UTC
        data            BLOB    NOT NULL,
        metadata        TEXT,              -- compact JSON, NULL when empty
        constraints     TEXT,              -- JSON list of [index, value, op], NULL when none
        UNIQUE (aggregate_id, version)
    );
    CREATE TABLE unique_constraints (
        index_name      TEXT    NOT NULL,
        value           TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        PRIMARY KEY (index_name, value)
    ) WITHOUT ROWID;
    CREATE TABLE processed_commands (
        command_id      TEXT    NOT NULL PRIMARY KEY,
        aggregate_id    TEXT    NOT NULL,
        event_ids       TEXT    NOT NULL,  -- JSON list, in version order
        processed_at    INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX processed_commands_by_expiry ON processed_commands (expires_at);
    CREATE TABLE snapshots (
        aggregate_id    TEXT    NOT NULL,
        version         INTEGER NOT NULL,
        aggregate_type  TEXT    NOT NULL,
        schema_key      TEXT    NOT NULL,
        data            BLOB    NOT NULL,
        created_at      INTEGER NOT NULL,
        PRIMARY KEY (aggregate_id, version)
    ) WITHOUT ROWID;
    CREATE INDEX snapshots_by_type ON snapshots (aggregate_type);
    CREATE TABLE projection_checkpoints (
        name            TEXT    NOT NULL PRIMARY KEY,
        position        INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: no index on command expiry: expired records are swept in bounded batches in
    # key order (SQLiteEventStore.sweep_expired_commands), so each command writes one
    # B-tree less
    """
    DROP INDEX processed_commands_by_expiry;
    """,
    # 3: how far each projection has scanned the log beside what it handled, so a
    # filtered projection reads on after the events it skipped (decisions.md, 14)
    """
    ALTER TABLE projection_checkpoints
        ADD COLUMN scanned_position INTEGER NOT NULL DEFAULT 0;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database up to SCHEMA_VERSION; returns the version it was at."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found == SCHEMA_VERSION:
        return int(found)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"event store {path!r} has schema version {found}, newer than this version of "
                f"eventstore understands ({SCHEMA_VERSION}). Upgrade eventstore to open it."
            )
        for number in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(found)
