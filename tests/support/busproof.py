"""Shared arrangements of the NATS tests: events to relay, and the exactly-once read model.

The read model holds one row per event id (UNIQUE) and a counter per
aggregate, in one SQLite transaction with its checkpoint: a doubled delivery
would violate the key or inflate the counter, a lost one would leave a row
missing, so comparing it with ``store.read_all()`` row by row proves
"exactly once in effect".
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from eventstore import Event, EventMetadata, NewEvent, ProjectionContext, new_event_id

DEPOSITED = "testbank.v1.MoneyDeposited"


def append(store, count: int, *, aggregates: int = 5, per_append: int = 1) -> None:  # type: ignore[no-untyped-def]
    """``count`` events over ``aggregates`` aggregates, ``per_append`` per append."""
    made = 0
    while made < count:
        agg = f"acc-{made % aggregates}"
        n = min(per_append, count - made)
        version = store.stream_version(agg)
        events = [
            NewEvent(
                new_event_id(),
                DEPOSITED,
                f"amount={made + i}".encode(),
                EventMetadata(correlation_id=f"corr-{made + i}", custom={"line": "a\r\nb"}),
            )
            for i in range(n)
        ]
        store.append(agg, "Account", version, events)
        made += n


class Ledger:
    """The exactly-once read model: one row per event id, a counter per aggregate."""

    name = "ledger"

    def reset(self, ctx: ProjectionContext) -> None:
        conn = ctx.connection
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ledger_rows (event_id TEXT PRIMARY KEY, "
            "position INTEGER UNIQUE NOT NULL, aggregate_id TEXT NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ledger_counts (aggregate_id TEXT PRIMARY KEY, "
            "n INTEGER NOT NULL)"
        )
        conn.execute("DELETE FROM ledger_rows")
        conn.execute("DELETE FROM ledger_counts")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        ctx.connection.execute(
            "INSERT INTO ledger_rows VALUES (?, ?, ?)",
            (event.event_id, event.position, event.aggregate_id),
        )
        ctx.connection.execute(
            "INSERT INTO ledger_counts VALUES (?, 1) "
            "ON CONFLICT (aggregate_id) DO UPDATE SET n = n + 1",
            (event.aggregate_id,),
        )


def ledger_rows(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return [
            (r[0], r[1])
            for r in conn.execute("SELECT event_id, position FROM ledger_rows ORDER BY position")
        ]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def ledger_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return dict(conn.execute("SELECT aggregate_id, n FROM ledger_counts"))
    finally:
        conn.close()


def assert_exactly_once(store, model_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The read model holds every stored event once, in order, and counters that agree."""
    expected = [(e.event_id, e.position) for e in store.read_all()]
    rows = ledger_rows(model_path)
    assert rows == expected, (
        f"read model differs from the store: {len(rows)} rows vs {len(expected)} events; "
        f"missing {len(set(expected) - set(rows))}, extra {len(set(rows) - set(expected))}"
    )
    counts: dict[str, int] = {}
    for event in store.read_all():
        counts[event.aggregate_id] = counts.get(event.aggregate_id, 0) + 1
    assert ledger_counts(model_path) == counts


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def wait_until_async(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Wait on the running loop until ``condition()`` is true; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
