"""Running a process manager on PostgreSQL: its tables in the store's schema.

The loop, the outbox and the timeouts are ``core.process_runner``'s; here are
only the statements, in PostgreSQL's dialect. The state, outbox and due-time
tables live in the store's schema beside the checkpoints
(``PostgresReadModel(store)``), so a batch's decisions and its checkpoint
commit in one transaction. Several runners of one manager may run at once (in
several processes): the projection's advisory lock serialises decisions; every
transaction that changes a process locks its row first (``FOR UPDATE``), then
its timeouts and outbox rows, so they take turns and never deadlock; a due
timeout is deleted only while still armed for the due time it was found at
(the claim), so it fires once; an outbox command is claimed for a lease
(``claimed_until``, on the server's clock, so runners on machines whose clocks
differ agree) before it is sent, so one runner at a time sends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ..core.process_runner import (
    OutboxCommand,
    ProcessRunnerBase,
    StoredProcess,
)
from .limits import check_texts
from .read_model import PostgresReadModel
from .store import PostgresEventStore

Connection = psycopg.Connection[Any]

_TABLES = (
    "CREATE TABLE IF NOT EXISTS process_state ("
    " manager TEXT NOT NULL, process_id TEXT NOT NULL, state TEXT NOT NULL,"
    " finished BOOLEAN NOT NULL DEFAULT FALSE, updated_at BIGINT NOT NULL,"
    " tenant TEXT NOT NULL DEFAULT '', PRIMARY KEY (manager, process_id))",
    "CREATE TABLE IF NOT EXISTS process_outbox ("
    " command_id TEXT NOT NULL PRIMARY KEY, manager TEXT NOT NULL, process_id TEXT NOT NULL,"
    " step TEXT NOT NULL, command_type TEXT NOT NULL, data BYTEA NOT NULL,"
    " created_at BIGINT NOT NULL, tenant TEXT NOT NULL DEFAULT '',"
    " seq BIGINT GENERATED ALWAYS AS IDENTITY, claimed_until BIGINT NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS process_outbox_by_manager"
    " ON process_outbox (manager, created_at, seq)",
    "CREATE TABLE IF NOT EXISTS process_timeouts ("
    " manager TEXT NOT NULL, process_id TEXT NOT NULL, step TEXT NOT NULL,"
    " due_at BIGINT NOT NULL, PRIMARY KEY (manager, process_id, step))",
    "CREATE INDEX IF NOT EXISTS process_timeouts_by_due ON process_timeouts (manager, due_at)",
)
#: Columns added after the first release of the tables: (table, column definition).
_ADDED_COLUMNS = (("process_outbox", "claimed_until BIGINT NOT NULL DEFAULT 0"),)
#: The server's clock in microseconds, one reading per statement.
_NOW = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint"


class PostgresProcessTables:
    """``ProcessTables`` in PostgreSQL's dialect, on the read model's connections."""

    def __init__(self, read_model: PostgresReadModel) -> None:
        self._read_model = read_model

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._read_model._transaction() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self._read_model.reading() as conn:
            yield conn

    def create(self, conn: Connection) -> None:
        # Two processes creating the tables at once would race on the catalog: take turns.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('eventstore:process-tables'))")
        for statement in _TABLES:
            conn.execute(statement.encode())
        for table, column in _ADDED_COLUMNS:
            # Looked up first: ALTER TABLE locks the table whole even when the column is there.
            found = conn.execute(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
                "AND NOT attisdropped",
                (table, column.split()[0]),
            ).fetchone()
            if found is None:  # a schema written before the column existed
                conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}".encode())

    def _check(self, where: str, **named: str) -> None:
        """Ids and names PostgreSQL text cannot hold (a NUL byte), refused before SQL runs."""
        check_texts(self._read_model.path, where, named.items())

    def load(self, conn: Connection, manager: str, key: str) -> StoredProcess | None:
        self._check("process manager load", manager=manager, process_id=key)
        # Locked until the transaction ends: a timeout and a refusal of one process take turns.
        row = conn.execute(
            "SELECT state, finished, tenant FROM process_state "
            "WHERE manager = %s AND process_id = %s FOR UPDATE",
            (manager, key),
        ).fetchone()
        return None if row is None else StoredProcess(row[0], bool(row[1]), row[2])

    def save(
        self, conn: Connection, manager: str, key: str, process: StoredProcess, now: int
    ) -> None:
        self._check("process manager save", manager=manager, process_id=key, tenant=process.tenant)
        conn.execute(
            "INSERT INTO process_state (manager, process_id, state, finished, updated_at, tenant) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (manager, process_id) DO UPDATE SET "
            "state = excluded.state, finished = excluded.finished, "
            "updated_at = excluded.updated_at, tenant = excluded.tenant",
            (manager, key, process.state, process.finished, now, process.tenant),
        )

    def queue(self, conn: Connection, manager: str, command: OutboxCommand, now: int) -> None:
        self._check(
            "process manager outbox",
            command_id=command.command_id,
            manager=manager,
            process_id=command.process_key,
            step=command.step,
            command_type=command.command_type,
            tenant=command.tenant,
        )
        conn.execute(
            "INSERT INTO process_outbox (command_id, manager, process_id, step, command_type, "
            "data, created_at, tenant) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (command_id) DO NOTHING",
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

    def arm(self, conn: Connection, manager: str, key: str, step: str, due: int) -> None:
        self._check("process manager timeout", manager=manager, process_id=key, step=step)
        conn.execute(
            "INSERT INTO process_timeouts (manager, process_id, step, due_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (manager, process_id, step) "
            "DO UPDATE SET due_at = excluded.due_at",
            (manager, key, step, due),
        )

    def disarm(self, conn: Connection, manager: str, key: str, step: str) -> None:
        conn.execute(
            "DELETE FROM process_timeouts WHERE manager = %s AND process_id = %s AND step = %s",
            (manager, key, step),
        )

    def due(self, conn: Connection, manager: str, cutoff: int) -> list[tuple[str, str, int]]:
        rows = conn.execute(
            "SELECT process_id, step, due_at FROM process_timeouts "
            "WHERE manager = %s AND due_at <= %s ORDER BY due_at",
            (manager, cutoff),
        ).fetchall()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def claim(self, conn: Connection, manager: str, key: str, step: str, due_at: int) -> bool:
        gone = conn.execute(
            "DELETE FROM process_timeouts WHERE manager = %s AND process_id = %s "
            "AND step = %s AND due_at = %s",
            (manager, key, step, due_at),
        )
        return gone.rowcount > 0

    def pending(self, conn: Connection, manager: str) -> list[OutboxCommand]:
        rows = conn.execute(
            "SELECT command_id, process_id, step, command_type, data, tenant FROM process_outbox "
            "WHERE manager = %s ORDER BY created_at, seq",
            (manager,),
        ).fetchall()
        return [OutboxCommand(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    def claim_command(self, conn: Connection, command_id: str, lease: int) -> int | None:
        # Two runners claiming at once: the second waits for the first's row lock, then
        # finds the row claimed (READ COMMITTED re-reads it) and changes nothing.
        row = conn.execute(
            f"UPDATE process_outbox SET claimed_until = clock.now + %s "
            f"FROM (SELECT {_NOW} AS now) AS clock "
            "WHERE command_id = %s AND claimed_until <= clock.now RETURNING claimed_until",
            (lease, command_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def release_command(self, conn: Connection, command_id: str, claim: int) -> None:
        conn.execute(
            "UPDATE process_outbox SET claimed_until = 0 "
            "WHERE command_id = %s AND claimed_until = %s",
            (command_id, claim),
        )

    def unqueue(self, conn: Connection, command_id: str, claim: int) -> bool:
        gone = conn.execute(
            "DELETE FROM process_outbox WHERE command_id = %s AND claimed_until = %s",
            (command_id, claim),
        )
        return gone.rowcount > 0

    def timeouts(self, conn: Connection, manager: str) -> list[tuple[str, str, int]]:
        rows = conn.execute(
            "SELECT process_id, step, due_at FROM process_timeouts WHERE manager = %s "
            "ORDER BY due_at, process_id, step",
            (manager,),
        ).fetchall()
        return [(r[0], r[1], int(r[2])) for r in rows]


class ProcessRunner(ProcessRunnerBase):
    """A process manager fed from a ``PostgresEventStore``'s log, its tables in the store's
    schema (same call shape as ``eventstore.sqlite.ProcessRunner``).

    See ``core.process_runner.ProcessRunnerBase`` for the arguments and the loop.
    """

    store: PostgresEventStore

    def _read_model(self, store: PostgresEventStore) -> PostgresReadModel:
        return PostgresReadModel(store)

    def _tables(self, read_model: PostgresReadModel) -> PostgresProcessTables:
        return PostgresProcessTables(read_model)


__all__ = ["PostgresProcessTables", "ProcessRunner"]
