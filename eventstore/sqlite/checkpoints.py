"""Projection checkpoints in SQLite: the last global position each projection handled,
and how far it has scanned the log past that (a filtered projection skips events)."""

from __future__ import annotations

import sqlite3
import time

from ..core.arguments import check_checkpoint, check_checkpoint_name
from .connections import ConnectionPool

UPSERT_CHECKPOINT = (
    "INSERT INTO projection_checkpoints (name, position, scanned_position, updated_at) "
    "VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
    "scanned_position = excluded.scanned_position, updated_at = excluded.updated_at"
)
_READ_PROGRESS = "SELECT position, scanned_position FROM projection_checkpoints WHERE name = ?"
# Added by migration 3 of the store's schema; a read model in a file of its own adds it too.
SCANNED_POSITION_COLUMN = "scanned_position INTEGER NOT NULL DEFAULT 0"


def write_checkpoint(
    conn: sqlite3.Connection, name: str, position: int, scanned_position: int | None = None
) -> None:
    """Write a checkpoint on ``conn``, inside whatever transaction is open there.

    ``scanned_position`` (never stored below ``position``) defaults to ``position``.
    """
    scanned = position if scanned_position is None else max(position, scanned_position)
    conn.execute(UPSERT_CHECKPOINT, (name, position, scanned, time.time_ns() // 1000))


def read_checkpoint(conn: sqlite3.Connection, name: str) -> int:
    return read_progress(conn, name)[0]


def read_progress(conn: sqlite3.Connection, name: str) -> tuple[int, int]:
    """``(checkpoint, scanned position)`` of ``name``; ``(0, 0)`` when it never ran."""
    row = conn.execute(_READ_PROGRESS, (name,)).fetchone()
    return (int(row[0]), max(int(row[0]), int(row[1]))) if row else (0, 0)


def add_scanned_position_column(conn: sqlite3.Connection) -> None:
    """Bring a checkpoint table made before migration 3 up to date (idempotent)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(projection_checkpoints)")}
    if "scanned_position" not in columns:
        conn.execute(f"ALTER TABLE projection_checkpoints ADD COLUMN {SCANNED_POSITION_COLUMN}")


class SQLiteCheckpoints:
    _db: ConnectionPool

    def load_checkpoint(self, name: str) -> int:
        check_checkpoint_name("load_checkpoint", name)
        with self._db.reading() as conn:
            return read_checkpoint(conn, name)

    def load_scanned_position(self, name: str) -> int:
        check_checkpoint_name("load_scanned_position", name)
        with self._db.reading() as conn:
            return read_progress(conn, name)[1]

    def save_checkpoint(
        self, name: str, position: int, *, scanned_position: int | None = None
    ) -> None:
        check_checkpoint(self._db.path, name, position, scanned_position)
        with self._db.transaction() as conn:
            write_checkpoint(conn, name, position, scanned_position)

    def delete_checkpoint(self, name: str) -> None:
        check_checkpoint_name("delete_checkpoint", name)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM projection_checkpoints WHERE name = ?", (name,))

    def list_checkpoints(self) -> dict[str, int]:
        with self._db.reading() as conn:
            rows = conn.execute("SELECT name, position FROM projection_checkpoints").fetchall()
        return {name: int(position) for name, position in rows}
