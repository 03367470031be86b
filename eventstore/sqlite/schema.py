"""The SQLite schema, as numbered migrations applied in order.

``PRAGMA user_version`` records how many have run. Migrations run under
``BEGIN IMMEDIATE`` so two processes opening a new file do not both apply one.

``PRAGMA application_id`` marks the file as eventstore's (``APPLICATION_ID``),
set by the first migration run. A file with tables but without the mark is
another application's and is refused, except the files of earlier versions,
made before the mark existed, which are recognised by their tables and marked
(docs/decisions.md).
"""

from __future__ import annotations

import sqlite3

from ..core.errors import ForeignDatabaseError, SchemaMigrationNeededError, SchemaVersionError

#: Our mark in the database header: ASCII "EvSt" (0x45765374), a fixed 32-bit constant.
APPLICATION_ID = 0x45765374
# The tables of migration 1: how files from before the mark (user_version 1 or 2) are known.
_STORE_TABLES = frozenset(
    {"events", "unique_constraints", "processed_commands", "snapshots", "projection_checkpoints"}
)
_LAST_UNMARKED_VERSION = 2
# SQLite's primary result code for a write to a read-only database, and the extended
# one for a read-only folder (reported as such by the store, not as a migration).
_SQLITE_READONLY = 8
_SQLITE_READONLY_DIRECTORY = 1544

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
    # 4: a command that saved several aggregates in one unit (append_many) lists every
    # (aggregate, event ids) here, JSON [[aggregate_id, [event ids]], ...]; NULL for a
    # command on one aggregate (docs/decisions.md, "A unit's command record lists every
    # aggregate")
    """
    ALTER TABLE processed_commands ADD COLUMN unit TEXT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def _header(conn: sqlite3.Connection) -> tuple[int, int]:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    user_version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(application_id), int(user_version)


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {row[0] for row in rows}


def _found(application_id: int, user_version: int, tables: set[str]) -> str:
    listed = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
    return (
        f"application_id {application_id:#x}, user_version {user_version}, "
        f"tables: {listed or 'none'}"
    )


def check_file(conn: sqlite3.Connection, path: str, *, read_model: bool = False) -> bool:
    """Refuse a file that is not ours or is newer than this code; True when it needs the mark.

    Ours: marked with APPLICATION_ID, or empty, or a file of an earlier version (the
    store's tables at user_version 1 or 2; for a read model, its checkpoint table).
    """
    application_id, user_version = _header(conn)
    if application_id == APPLICATION_ID:
        if user_version > SCHEMA_VERSION:
            raise SchemaVersionError(path, user_version, SCHEMA_VERSION)
        return False
    tables = _tables(conn)
    if application_id == 0 and user_version == 0 and not tables:
        return True  # a new file
    if application_id == 0 and tables:
        if 1 <= user_version <= _LAST_UNMARKED_VERSION and tables >= _STORE_TABLES:
            return True  # an event store made before the mark
        if read_model and user_version == 0 and "projection_checkpoints" in tables:
            return True  # a read model's own file made before the mark
    raise ForeignDatabaseError(path, _found(application_id, user_version, tables))


def mark_read_model_file(conn: sqlite3.Connection, path: str) -> None:
    """Check a read model's file and mark it; call inside the transaction creating its tables."""
    if check_file(conn, path, read_model=True):
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Check the file, bring it up to SCHEMA_VERSION and mark it; returns the version it was at.

    A store file of an older schema that cannot be written (``mode=ro``, its permissions)
    raises ``SchemaMigrationNeededError``: the read paths need the current schema
    (migration 3's ``scanned_position`` for checkpoints, 4's ``unit`` for command
    records), and bringing it there writes.
    """
    application_id, found = _header(conn)
    if application_id == APPLICATION_ID and found == SCHEMA_VERSION:
        return found
    try:
        return _migrate(conn, path)
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None or code & 0xFF != _SQLITE_READONLY or code == _SQLITE_READONLY_DIRECTORY:
            raise
        check_file(conn, path)  # another application's file, or a newer one, says so first
        older = _header(conn)[1]
        if not 1 <= older < SCHEMA_VERSION:
            raise  # a new (empty) file, say: nothing to read, so read-only it stays
        raise SchemaMigrationNeededError(path, older, SCHEMA_VERSION) from exc


def _migrate(conn: sqlite3.Connection, path: str) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        unmarked = check_file(conn, path)
        application_id, found = _header(conn)
        if found == 0 and _tables(conn):
            # Marked, tables, but no store schema: a read model's own file.
            raise ForeignDatabaseError(
                path,
                _found(application_id, found, _tables(conn)),
                reason="the file holds a read model's tables but no event store "
                "(user_version 0), so the store's tables would clash with them",
            )
        for number in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if unmarked:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
