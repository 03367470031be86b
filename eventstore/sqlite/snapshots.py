"""Snapshot storage in SQLite: every version kept until retention removes it."""

from __future__ import annotations

import time

from ..core.arguments import (
    check_lookup_id,
    check_snapshot,
    last_version_older_than,
    snapshot_version_bound,
    snapshots_to_keep,
)
from ..core.events import timestamp_from_micros
from ..core.snapshots import Snapshot, SnapshotStats
from .connections import ConnectionPool

_COLUMNS = "aggregate_id, aggregate_type, version, schema_key, data, created_at"


def _check_id(where: str, name: str, value: object) -> None:
    """``check_lookup_id`` past the usual case (an ASCII ``str``), tested inline: loads
    look for a snapshot first."""
    if type(value) is not str or not value.isascii():
        check_lookup_id(where, name, value)


def _row_to_snapshot(row: tuple) -> Snapshot:  # type: ignore[type-arg]
    return Snapshot(row[0], row[1], row[2], row[3], row[4], timestamp_from_micros(row[5]))


class SQLiteSnapshots:
    _db: ConnectionPool

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot; saving the same (aggregate, version) again replaces it harmlessly.

        Its version runs from 1 (``check_snapshot``: at 0 there is nothing to snapshot).
        """
        check_snapshot(self._db.path, snapshot)
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO snapshots ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    snapshot.aggregate_id,
                    snapshot.aggregate_type,
                    snapshot.version,
                    snapshot.schema_key,
                    snapshot.data,
                    time.time_ns() // 1000,
                ),
            )

    def latest_snapshot(
        self, aggregate_id: str, at_or_before_version: int | None = None
    ) -> Snapshot | None:
        """The newest snapshot of ``aggregate_id``, or the newest at or before a version
        (one beyond the integers is no bound)."""
        _check_id("latest_snapshot", "aggregate_id", aggregate_id)
        bound = snapshot_version_bound(
            "latest_snapshot", "at_or_before_version", at_or_before_version
        )
        with self._db.reading() as conn:
            if bound is None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM snapshots WHERE aggregate_id = ? "
                    "ORDER BY version DESC LIMIT 1",
                    (aggregate_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM snapshots WHERE aggregate_id = ? AND version <= ? "
                    "ORDER BY version DESC LIMIT 1",
                    (aggregate_id, bound),
                ).fetchone()
        return _row_to_snapshot(row) if row else None

    def list_snapshots(self, aggregate_id: str) -> list[Snapshot]:
        _check_id("list_snapshots", "aggregate_id", aggregate_id)
        with self._db.reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM snapshots WHERE aggregate_id = ? ORDER BY version",
                (aggregate_id,),
            ).fetchall()
        return [_row_to_snapshot(r) for r in rows]

    def delete_snapshots_older_than(self, aggregate_id: str, version: int) -> int:
        """Delete the snapshots of ``aggregate_id`` below ``version``; how many went.

        A ``version`` of 2**63 or more deletes them all; one at or below 1 (a negative one
        too) deletes none.
        """
        _check_id("delete_snapshots_older_than", "aggregate_id", aggregate_id)
        last = last_version_older_than("delete_snapshots_older_than", version)
        with self._db.transaction() as conn:
            return conn.execute(
                "DELETE FROM snapshots WHERE aggregate_id = ? AND version <= ?",
                (aggregate_id, last),
            ).rowcount

    def delete_snapshots_of_type(self, aggregate_type: str) -> int:
        _check_id("delete_snapshots_of_type", "aggregate_type", aggregate_type)
        with self._db.transaction() as conn:
            return conn.execute(
                "DELETE FROM snapshots WHERE aggregate_type = ?", (aggregate_type,)
            ).rowcount

    def keep_last_snapshots(self, aggregate_id: str, count: int) -> int:
        """Delete all but the newest ``count`` snapshots of an aggregate (an int >= 0;
        one of 2**63 or more keeps them all)."""
        _check_id("keep_last_snapshots", "aggregate_id", aggregate_id)
        keep = snapshots_to_keep("keep_last_snapshots", count)
        with self._db.transaction() as conn:
            return conn.execute(
                "DELETE FROM snapshots WHERE aggregate_id = ? AND version NOT IN ("
                " SELECT version FROM snapshots WHERE aggregate_id = ?"
                " ORDER BY version DESC LIMIT ?)",
                (aggregate_id, aggregate_id, keep),
            ).rowcount

    def snapshot_stats(self) -> SnapshotStats:
        with self._db.reading() as conn:
            count, aggregates, total = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT aggregate_id), COALESCE(SUM(LENGTH(data)), 0) "
                "FROM snapshots"
            ).fetchone()
        return SnapshotStats(count, aggregates, total)
