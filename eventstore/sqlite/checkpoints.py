"""Projection checkpoints in SQLite: the last global position each projection handled."""

from __future__ import annotations

import sqlite3
import time

from .connections import ConnectionPool

UPSERT_CHECKPOINT = (
    "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
    "updated_at = excluded.updated_at"
)


def write_checkpoint(conn: sqlite3.Connection, name: str, position: int) -> None:
    """Write a checkpoint on ``conn``, inside whatever transaction is open there."""
    conn.execute(UPSERT_CHECKPOINT, (name, position, time.time_ns() // 1000))


def read_checkpoint(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(
        "SELECT position FROM projection_checkpoints WHERE name = ?", (name,)
    ).fetchone()
    return int(row[0]) if row else 0


class SQLiteCheckpoints:
    _db: ConnectionPool

    def load_checkpoint(self, name: str) -> int:
        with self._db.reading() as conn:
            return read_checkpoint(conn, name)

    def save_checkpoint(self, name: str, position: int) -> None:
        if position < 0:
            raise ValueError(f"checkpoint {name!r}: position must be >= 0, got {position}")
        with self._db.transaction() as conn:
            write_checkpoint(conn, name, position)

    def delete_checkpoint(self, name: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM projection_checkpoints WHERE name = ?", (name,))

    def list_checkpoints(self) -> dict[str, int]:
        with self._db.reading() as conn:
            rows = conn.execute("SELECT name, position FROM projection_checkpoints").fetchall()
        return {name: int(position) for name, position in rows}
