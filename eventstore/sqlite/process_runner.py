"""Running a process manager on SQLite: its tables in the store's file, in SQLite's dialect.

The loop, the outbox and the timeouts are ``core.process_runner``'s; here are
only the statements: the manager's state, outbox and due-time tables live in
the store's own file beside the checkpoint (``SQLiteReadModel(store)``), so a
batch's decisions and its checkpoint commit in one transaction. Several
runners (processes) may share the file: the checkpoint is re-read in each
batch's transaction, a due timeout is deleted only while still armed, and an
outbox command is claimed (``claimed_until``, on this machine's clock) before
it is sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.process_managers import process_command_id
from ..core.process_runner import (
    OutboxCommand,
    ProcessRunnerBase,
    StoredProcess,
    now_micros,
)
from .read_model import SQLiteReadModel
from .store import SQLiteEventStore

_TABLES = (
    "CREATE TABLE IF NOT EXISTS process_state ("
    " manager TEXT NOT NULL, process_id TEXT NOT NULL, state TEXT NOT NULL,"
    " finished INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL,"
    " tenant TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (manager, process_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS process_outbox ("
    " command_id TEXT NOT NULL PRIMARY KEY, manager TEXT NOT NULL, process_id TEXT NOT NULL,"
    " step TEXT NOT NULL, command_type TEXT NOT NULL, data BLOB NOT NULL,"
    " created_at INTEGER NOT NULL, tenant TEXT NOT NULL DEFAULT '',"
    " claimed_until INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS process_timeouts ("
    " manager TEXT NOT NULL, process_id TEXT NOT NULL, step TEXT NOT NULL,"
    " due_at INTEGER NOT NULL, PRIMARY KEY (manager, process_id, step)) WITHOUT ROWID",
)
#: Columns added after the first release of the tables: (table, column definition).
_ADDED_COLUMNS = (
    ("process_state", "tenant TEXT NOT NULL DEFAULT ''"),
    ("process_outbox", "tenant TEXT NOT NULL DEFAULT ''"),
    ("process_outbox", "claimed_until INTEGER NOT NULL DEFAULT 0"),
)


class SQLiteProcessTables:
    """``ProcessTables`` in SQLite's dialect, on the store's (or read model's) pool."""

    def __init__(self, read_model: SQLiteReadModel) -> None:
        self._db = read_model._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db.transaction() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._db.reading() as conn:
            yield conn

    def create(self, conn: sqlite3.Connection) -> None:
        for statement in _TABLES:
            conn.execute(statement)
        for table, column in _ADDED_COLUMNS:
            names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column.split()[0] not in names:  # a file written before the column existed
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def load(self, conn: sqlite3.Connection, manager: str, key: str) -> StoredProcess | None:
        row = conn.execute(
            "SELECT state, finished, tenant FROM process_state "
            "WHERE manager = ? AND process_id = ?",
            (manager, key),
        ).fetchone()
        return None if row is None else StoredProcess(row[0], bool(row[1]), row[2])

    def save(
        self, conn: sqlite3.Connection, manager: str, key: str, process: StoredProcess, now: int
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO process_state "
            "(manager, process_id, state, finished, updated_at, tenant) VALUES (?, ?, ?, ?, ?, ?)",
            (manager, key, process.state, int(process.finished), now, process.tenant),
        )

    def queue(
        self, conn: sqlite3.Connection, manager: str, command: OutboxCommand, now: int
    ) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO process_outbox (command_id, manager, process_id, step, "
            "command_type, data, created_at, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                command.command_id,
                manager,
                command.process_key,
                command.step,
                command.command_type,
                command.data,
                now,
                command.tenant,
            ),
        )

    def arm(self, conn: sqlite3.Connection, manager: str, key: str, step: str, due: int) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO process_timeouts (manager, process_id, step, due_at) "
            "VALUES (?, ?, ?, ?)",
            (manager, key, step, due),
        )

    def disarm(self, conn: sqlite3.Connection, manager: str, key: str, step: str) -> None:
        conn.execute(
            "DELETE FROM process_timeouts WHERE manager = ? AND process_id = ? AND step = ?",
            (manager, key, step),
        )

    def due(
        self, conn: sqlite3.Connection, manager: str, cutoff: int
    ) -> list[tuple[str, str, int]]:
        rows = conn.execute(
            "SELECT process_id, step, due_at FROM process_timeouts "
            "WHERE manager = ? AND due_at <= ? ORDER BY due_at",
            (manager, cutoff),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def claim(
        self, conn: sqlite3.Connection, manager: str, key: str, step: str, due_at: int
    ) -> bool:
        gone = conn.execute(
            "DELETE FROM process_timeouts WHERE manager = ? AND process_id = ? "
            "AND step = ? AND due_at = ?",
            (manager, key, step, due_at),
        )
        return gone.rowcount > 0

    def pending(self, conn: sqlite3.Connection, manager: str) -> list[OutboxCommand]:
        rows = conn.execute(
            "SELECT command_id, process_id, step, command_type, data, tenant FROM process_outbox "
            "WHERE manager = ? ORDER BY created_at, rowid",
            (manager,),
        ).fetchall()
        return [OutboxCommand(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    def claim_command(self, conn: sqlite3.Connection, command_id: str, lease: int) -> int | None:
        now = now_micros()
        claimed = conn.execute(
            "UPDATE process_outbox SET claimed_until = ? "
            "WHERE command_id = ? AND claimed_until <= ?",
            (now + lease, command_id, now),
        )
        return now + lease if claimed.rowcount > 0 else None

    def release_command(self, conn: sqlite3.Connection, command_id: str, claim: int) -> None:
        conn.execute(
            "UPDATE process_outbox SET claimed_until = 0 "
            "WHERE command_id = ? AND claimed_until = ?",
            (command_id, claim),
        )

    def unqueue(self, conn: sqlite3.Connection, command_id: str, claim: int) -> bool:
        gone = conn.execute(
            "DELETE FROM process_outbox WHERE command_id = ? AND claimed_until = ?",
            (command_id, claim),
        )
        return gone.rowcount > 0

    def timeouts(self, conn: sqlite3.Connection, manager: str) -> list[tuple[str, str, int]]:
        rows = conn.execute(
            "SELECT process_id, step, due_at FROM process_timeouts WHERE manager = ? "
            "ORDER BY due_at, process_id, step",
            (manager,),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]


class ProcessRunner(ProcessRunnerBase):
    """A process manager fed from a ``SQLiteEventStore``'s log, its tables in the store's file.

    See ``core.process_runner.ProcessRunnerBase`` for the arguments and the loop.
    """

    store: SQLiteEventStore

    def _read_model(self, store: SQLiteEventStore) -> SQLiteReadModel:
        return SQLiteReadModel(store)

    def _tables(self, read_model: SQLiteReadModel) -> SQLiteProcessTables:
        return SQLiteProcessTables(read_model)


__all__ = ["ProcessRunner", "SQLiteProcessTables", "process_command_id"]
