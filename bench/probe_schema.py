"""What each piece of the store's schema costs a single-event command, in raw sqlite3.

Runs the statements of one `append(..., command_id=...)` at `synchronous=NORMAL`
on the store's schema, then again with pieces taken away, and prints the rate
of each beside the full one. It is how decisions 8 and 9 in docs/decisions.md
were weighed:

    .venv/bin/python -m bench.probe_schema
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import tempfile
import time

from eventstore.core.ids import deterministic_event_id
from eventstore.sqlite.schema import MIGRATIONS

N = 5_000


def _connect(with_expiry_index: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "probe.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    if not with_expiry_index:
        conn.execute("DROP INDEX processed_commands_by_expiry")
    return conn


def _saves_per_second(conn: sqlite3.Connection, *, retry_lookup: bool, record: bool) -> float:
    start = time.perf_counter()
    for i in range(N):
        command_id = f"cmd-{i}"
        event_id = deterministic_event_id(command_id, "acc", 0)
        conn.execute("BEGIN IMMEDIATE")
        if record:
            conn.execute(
                "SELECT event_ids FROM processed_commands WHERE command_id = ?", (command_id,)
            ).fetchone()
        if retry_lookup:
            conn.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone()
        conn.execute("SELECT MAX(version) FROM events WHERE aggregate_id = ?", ("acc",)).fetchone()
        conn.execute(
            "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
            "timestamp, data, metadata, constraints) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, "acc", "Account", "bank.v1.Deposited", i + 1, 0, b"\x08\x05", None, None),
        )
        if record:
            conn.execute(
                "INSERT INTO processed_commands "
                "(command_id, aggregate_id, event_ids, processed_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (command_id, "acc", json.dumps([event_id]), 0, 10**15),
            )
        conn.execute("COMMIT")
    return N / (time.perf_counter() - start)


def main() -> None:
    variants = [
        ("schema 1: expiry index, retry lookup on every command", True, True, True),
        ("no retry lookup on the happy path (decision 9)", True, False, True),
        ("no expiry index (decision 8)", False, True, True),
        ("both: what the store runs now", False, False, True),
        ("no command record at all (not idempotent)", False, False, False),
    ]
    base = None
    for name, index, lookup, record in variants:
        rate = statistics.median(
            _saves_per_second(_connect(index), retry_lookup=lookup, record=record)
            for _ in range(3)
        )
        base = base or rate
        print(f"{name:56s} {rate:9,.0f} saves/s  {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
