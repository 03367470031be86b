"""The PostgreSQL schema, as numbered migrations applied in order under an advisory lock.

Everything lives in one PostgreSQL schema (``eventstore`` unless told
otherwise), so several stores can share a database. ``schema_version`` holds
how many migrations have run. Two processes opening a new schema at once
serialise on a transaction-level advisory lock keyed by the schema's name, so
each migration runs once; a schema written by a newer eventstore is refused.
"""

from __future__ import annotations

import zlib

import psycopg
from psycopg import sql

from ..core.errors import ForeignDatabaseError, SchemaVersionError, StorageError

MIGRATIONS: tuple[str, ...] = (
    # 1: the log, constraints, commands, snapshots, checkpoints (as SQLite's 1-3)
    """
    CREATE SEQUENCE {s}.events_position_seq AS BIGINT;
    CREATE TABLE {s}.events (
        position        BIGINT  PRIMARY KEY DEFAULT nextval('{s}.events_position_seq'),
        event_id        TEXT    NOT NULL UNIQUE,
        aggregate_id    TEXT    NOT NULL,
        aggregate_type  TEXT    NOT NULL,
        event_type      TEXT    NOT NULL,
        version         BIGINT  NOT NULL CHECK (version >= 1),
        timestamp       BIGINT  NOT NULL,
        data            BYTEA   NOT NULL,
        metadata        TEXT,
        constraints     TEXT,
        UNIQUE (aggregate_id, version)
    );
    ALTER SEQUENCE {s}.events_position_seq OWNED BY {s}.events.position;
    CREATE TABLE {s}.unique_constraints (
        index_name      TEXT    NOT NULL,
        value           TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        PRIMARY KEY (index_name, value)
    );
    CREATE TABLE {s}.processed_commands (
        command_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        aggregate_id    TEXT    NOT NULL,
        event_ids       TEXT    NOT NULL,
        processed_at    BIGINT  NOT NULL,
        expires_at      BIGINT  NOT NULL
    );
    CREATE TABLE {s}.snapshots (
        aggregate_id    TEXT    NOT NULL,
        version         BIGINT  NOT NULL,
        aggregate_type  TEXT    NOT NULL,
        schema_key      TEXT    NOT NULL,
        data            BYTEA   NOT NULL,
        created_at      BIGINT  NOT NULL,
        PRIMARY KEY (aggregate_id, version)
    );
    CREATE INDEX snapshots_by_type ON {s}.snapshots (aggregate_type);
    CREATE TABLE {s}.projection_checkpoints (
        name             TEXT   NOT NULL PRIMARY KEY,
        position         BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL,
        scanned_position BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE {s}.projection_dead_letters (
        projection      TEXT    NOT NULL,
        position        BIGINT  NOT NULL,
        event_id        TEXT    NOT NULL,
        event_type      TEXT    NOT NULL,
        aggregate_id    TEXT    NOT NULL,
        error_type      TEXT    NOT NULL,
        message         TEXT    NOT NULL,
        traceback       TEXT    NOT NULL,
        failed_at       BIGINT  NOT NULL,
        PRIMARY KEY (projection, position)
    )
    """,
    # 2: a unit's command record lists every (aggregate, event ids) (as SQLite's 4)
    """
    ALTER TABLE {s}.processed_commands ADD COLUMN unit TEXT
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def lock_key(schema: str, purpose: str) -> int:
    """A stable 63-bit advisory-lock key for ``purpose`` in ``schema``."""
    return zlib.crc32(f"eventstore:{schema}:{purpose}".encode()) | (0x4576 << 32)


def migrate(conn: psycopg.Connection, schema: str, where: str) -> int:
    """Bring ``schema`` up to SCHEMA_VERSION; returns the version found. ``conn`` autocommits.

    Reads before it creates: PostgreSQL checks the CREATE privilege before ``IF
    NOT EXISTS``, so an application role with only the rights docs/postgres.md
    lists (USAGE on the schema, row rights on its tables) opens a schema that is
    up to date without creating anything.
    """
    s = sql.Identifier(schema)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, "migrate"),))
            found, recorded = _version_found(conn, schema, where)
            if found > SCHEMA_VERSION:
                raise SchemaVersionError(where, found, SCHEMA_VERSION)
            if found == SCHEMA_VERSION:
                return found
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_version (version INTEGER NOT NULL)"
                ).format(s)
            )
            quoted = s.as_string(conn)
            for number in range(found + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement.replace("{s}", quoted).encode())
            if not recorded:
                conn.execute(
                    sql.SQL("INSERT INTO {}.schema_version VALUES (%s)").format(s),
                    (SCHEMA_VERSION,),
                )
            else:
                conn.execute(
                    sql.SQL("UPDATE {}.schema_version SET version = %s").format(s),
                    (SCHEMA_VERSION,),
                )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StorageError(
            where,
            f"this role may not create eventstore's tables in schema {schema!r} "
            f"({str(exc).strip().splitlines()[0]})",
            "Open the store once as a role with CREATE on the database (it creates the "
            "schema and its tables, and later migrations); the application's role then "
            "needs USAGE on the schema and SELECT, INSERT, UPDATE, DELETE on its tables and "
            "USAGE, UPDATE on events_position_seq (docs/postgres.md, Permissions).",
        ) from exc
    return found


def _version_found(conn: psycopg.Connection, schema: str, where: str) -> tuple[int, bool]:
    """(the schema's eventstore version, whether a version row exists): (0, False) for a
    schema that does not exist or is empty; a schema of another application is refused."""
    quoted = sql.Identifier(schema).as_string(conn)
    table = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.schema_version",)).fetchone()
    if table is None or table[0] is None:
        others = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name LIMIT 5",
            (schema,),
        ).fetchall()
        if others:
            raise _foreign(where, schema, f"tables {', '.join(r[0] for r in others)}")
        return 0, False
    row = conn.execute(
        sql.SQL("SELECT version::text FROM {}.schema_version").format(sql.Identifier(schema))
    ).fetchone()
    if row is None:
        return 0, False
    text = str(row[0])
    if not text.isdigit():  # eventstore writes a plain count of migrations
        raise _foreign(where, schema, f"a schema_version of {text!r}")
    return int(text), True


def _foreign(where: str, schema: str, found: str) -> ForeignDatabaseError:
    return ForeignDatabaseError(
        where,
        found,
        f"schema {schema!r} holds another application's tables ({found}), not eventstore's",
        "Give the event store a schema of its own: ?schema=NAME in the URL, or schema=.",
    )
