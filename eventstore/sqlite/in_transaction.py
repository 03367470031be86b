"""The event store seen from inside a read model's transaction (``ctx.store`` in a handler).

A projection whose read model lives in the store's own file
(``SQLiteReadModel(store)``) handles each batch in a transaction on the
store's writer connection. A process manager needs to append to the store
from such a handler, atomically with its read model and its checkpoint: a
crash or a handler that raises leaves neither the append nor the checkpoint,
and a replay of the batch appends again only what was rolled back. This view
runs the store's own append (``SQLiteEventStore.append_on``: versions,
idempotency by command id, constraints) and reads on that connection, so a
handler sees its own appends; commit listeners are called once the read
model's transaction has committed.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Sequence
from datetime import timedelta

from ..core.errors import EventStoreError
from ..core.events import Event, NewEvent
from ..core.ports import DEFAULT_COMMAND_TTL, AppendResult
from ..core.units import StreamAppend, UnitResult
from .store import _STREAM_VERSION, EVENT_COLUMNS, SQLiteEventStore


class TransactionEndedError(EventStoreError):
    def __init__(self, projection: str) -> None:
        self.projection = projection
        super().__init__(
            f"the event store of projection {projection!r}'s handler was used after its "
            "batch's transaction ended. Use ctx.store only inside handle(), while it runs."
        )


class EventStoreInTransaction:
    """``append``, ``find_command`` and the stream reads of a ``SQLiteEventStore``, on a
    connection inside a transaction that someone else commits.

    Enough of the ``EventStore`` port for a ``Repository`` (no snapshots): a
    handler can load an aggregate, change it and ``save_with_command`` it.
    """

    def __init__(self, store: SQLiteEventStore, conn: sqlite3.Connection, projection: str) -> None:
        self._store = store
        self._conn: sqlite3.Connection | None = conn
        self._projection = projection
        self.last_position = 0  # the last position appended, for the commit listeners

    @property
    def path(self) -> str:
        return self._store.path

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise TransactionEndedError(self._projection)
        return self._conn

    def end(self, *, committed: bool) -> None:
        """The transaction ended: tell the commit listeners if it committed appends."""
        self._conn = None
        last, self.last_position = self.last_position, 0
        if committed and last:
            self._store.notify_commit(last)

    # -- writing --------------------------------------------------------------------
    def append(
        self,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> AppendResult:
        result, last = self._store.append_on(
            self._connection(),
            aggregate_id,
            aggregate_type,
            expected_version,
            events,
            command_id=command_id,
            command_ttl=command_ttl,
        )
        self.last_position = max(self.last_position, last)
        return result

    def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """Several aggregates at once, inside the batch's transaction (a ``UnitOfWork``
        on ``ctx.store`` commits with the batch and its checkpoint)."""
        result, last = self._store.append_many_on(
            self._connection(), appends, command_id=command_id, command_ttl=command_ttl
        )
        self.last_position = max(self.last_position, last)
        return result

    # -- reading, including this transaction's own appends -----------------------------
    def find_command(self, command_id: str, aggregate_id: str) -> AppendResult | None:
        conn = self._connection()
        return self._store._find_command(conn, command_id, aggregate_id, time.time_ns() // 1000)

    def stream_version(self, aggregate_id: str) -> int:
        row = self._connection().execute(_STREAM_VERSION, (aggregate_id,)).fetchone()
        return int(row[0] or 0)

    def load_stream(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = ? AND version > ?"
        params: list[object] = [aggregate_id, after_version]
        if up_to_version is not None:
            sql += " AND version <= ?"
            params.append(up_to_version)
        rows = self._connection().execute(sql + " ORDER BY version", params)
        return list(itertools.starmap(Event, rows))

    def head_position(self) -> int:
        row = self._connection().execute("SELECT MAX(position) FROM events").fetchone()
        return int(row[0] or 0)

    def __repr__(self) -> str:
        state = "ended" if self._conn is None else "in transaction"
        return f"EventStoreInTransaction({self._store.path!r}, {state})"
