"""PostgreSQL beside raw psycopg running the same statements, and SQLite beside raw sqlite3.

Figures (issue 12): single-event idempotent commands per second with 1 and 16
concurrent clients (threads of one process, sharing one store object: group
commit), 100-event appends, and the paged log read. Baselines in the same run:

- raw psycopg, the same statements in the same transactions, **the position
  lock included** (one connection per client, one transaction per command:
  what a store without group commit would do);
- raw psycopg without the lock, for honesty (fast, but a reader could skip a
  committed event: not a correct event store);
- the same figures for SQLite: ``SQLiteEventStore`` beside raw ``sqlite3``
  running its statements (``synchronous=FULL``).

The server is an ``EmbeddedPostgres`` (fsync on) unless ``EVENTSTORE_PG_DSN``
names one. Each contender runs ``ROUNDS`` rounds, interleaved; the median counts.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from eventstore import NewEvent, new_event_id
from eventstore.core.ids import deterministic_event_id
from eventstore.postgres import EmbeddedPostgres, PostgresEventStore
from eventstore.sqlite import SQLiteEventStore

from ._progress import quick_requested, step
from .common import Figure

TOPIC = "postgres"
_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_TTL = 7 * 86_400 * 1_000_000
_CHECK = (
    "SELECT (SELECT MAX(version) FROM events WHERE aggregate_id = {m}), c.event_ids, "
    "c.processed_at, c.expires_at, c.aggregate_id FROM (SELECT 1) AS one "
    "LEFT JOIN processed_commands AS c ON c.command_id = {m}"
)
_INSERT = (
    "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
    "timestamp, data, metadata, constraints) VALUES ({v})"
)
_COMMAND = (
    "INSERT INTO processed_commands (command_id, aggregate_id, event_ids, processed_at, "
    "expires_at) VALUES ({v}) ON CONFLICT (command_id) DO UPDATE SET "
    "aggregate_id = excluded.aggregate_id"
)


def _rate(contenders: dict[str, Callable[[], int]], rounds: int, what: str) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        names = list(contenders)
        names = names[r % len(names) :] + names[: r % len(names)]
        for name in names:
            step(TOPIC, f"{what}: {name}, round {r + 1}/{rounds}")
            started = time.perf_counter()
            n = contenders[name]()
            rates[name].append(n / (time.perf_counter() - started))
    return {name: statistics.median(v) for name, v in rates.items()}


# -- PostgreSQL ------------------------------------------------------------------------------
class _RawPg:
    """The store's statements on plain psycopg connections, one transaction per command."""

    def __init__(self, dsn: str, schema: str, lock: bool) -> None:
        self.dsn, self.schema, self.lock = dsn, schema, lock
        self.key = __import__("eventstore.postgres.schema", fromlist=["lock_key"]).lock_key(
            schema, "position"
        )

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, options=f"-c search_path={self.schema}")

    def command(self, conn: psycopg.Connection, aggregate: str, command_id: str) -> None:
        with conn.transaction():
            if self.lock:
                conn.execute(_LOCK, (self.key,))
            now = time.time_ns() // 1000
            version = conn.execute(_CHECK.format(m="%s"), (aggregate, command_id)).fetchone()[0]
            event_id = deterministic_event_id(command_id, aggregate, 0)
            conn.execute(
                _INSERT.format(v=", ".join(["%s"] * 9)) + " RETURNING position",
                (
                    event_id,
                    aggregate,
                    "Account",
                    "Deposited",
                    (version or 0) + 1,
                    now,
                    b"x" * 40,
                    '{"causation_id":"' + command_id + '"}',
                    None,
                ),
            ).fetchone()
            conn.execute(
                _COMMAND.format(v="%s, %s, %s, %s, %s"),
                (command_id, aggregate, f'["{event_id}"]', now, now + _TTL),
            )
            if self.lock:
                conn.execute("SELECT pg_notify(%s, %s)", (f"eventstore_{self.schema}", "1"))

    def batch(self, conn: psycopg.Connection, aggregate: str, size: int) -> None:
        with conn.transaction():
            if self.lock:
                conn.execute(_LOCK, (self.key,))
            now = time.time_ns() // 1000
            version = (
                conn.execute(
                    "SELECT MAX(version) FROM events WHERE aggregate_id = %s", (aggregate,)
                ).fetchone()[0]
                or 0
            )
            rows = [
                (
                    new_event_id(),
                    aggregate,
                    "Account",
                    "Deposited",
                    version + i,
                    now,
                    b"x" * 40,
                    None,
                    None,
                )
                for i in range(1, size + 1)
            ]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * size)
            sql = _INSERT.format(v="%s").replace("VALUES (%s)", f"VALUES {values}")
            conn.execute((sql + " RETURNING position").encode(), [v for r in rows for v in r])
            if self.lock:
                conn.execute("SELECT pg_notify(%s, %s)", (f"eventstore_{self.schema}", "1"))


def _clients(n_clients: int, per_client: int, work: Callable[[int, int], None]) -> int:
    with ThreadPoolExecutor(n_clients) as pool:
        list(pool.map(lambda c: [work(c, i) for i in range(per_client)], range(n_clients)))
    return n_clients * per_client


def _postgres(dsn: str, quick: bool) -> list[Figure]:
    rounds = 1 if quick else 3
    ops = 150 if quick else 600
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    figures: list[Figure] = []
    with PostgresEventStore(dsn, schema=schema, pool_size=4) as store:
        raw, bare = _RawPg(dsn, schema, True), _RawPg(dsn, schema, False)
        conns = [raw.connect() for _ in range(16)]
        data = b"x" * 40

        def ours(clients: int) -> Callable[[], int]:
            def go() -> int:
                tag = uuid.uuid4().hex[:6]

                def work(c: int, i: int) -> None:
                    cid = f"{tag}-{c}-{i}"
                    agg = f"o{tag}-{c}-{i}"
                    store.append(
                        agg,
                        "Account",
                        0,
                        [NewEvent(deterministic_event_id(cid, agg, 0), "Deposited", data)],
                        command_id=cid,
                    )

                per = ops if clients == 1 else ops * 2 // clients
                return _clients(clients, per, work)

            return go

        def raw_go(engine: _RawPg, clients: int) -> Callable[[], int]:
            def go() -> int:
                tag = uuid.uuid4().hex[:6]
                per = ops if clients == 1 else ops * 2 // clients
                return _clients(
                    clients,
                    per,
                    lambda c, i: engine.command(conns[c], f"r{tag}-{c}-{i}", f"r{tag}-{c}-{i}"),
                )

            return go

        for clients in (1, 16):
            rates = _rate(
                {
                    "ours": ours(clients),
                    "raw": raw_go(raw, clients),
                    "raw-nolock": raw_go(bare, clients),
                },
                rounds,
                f"commands, {clients} client(s)",
            )
            name = f"idempotent command, 1 event/txn, {clients} client(s)"
            figures.append(_fig(name, rates, "commands/s"))
            figures.append(_nolock(name, rates, "commands/s"))
            if clients == 1:
                one = rates["ours"]
            else:
                figures.append(
                    Figure(
                        TOPIC,
                        "idempotent command, 16 clients vs 1 client (group commit)",
                        rates["ours"],
                        "commands/s",
                        "ours, 1 client",
                        one,
                        target_text=">= 3x one client",
                        meets_target=rates["ours"] >= 3 * one,
                    )
                )

        batches = 20 if quick else 60

        def ours_batches() -> int:
            agg = f"b{uuid.uuid4().hex[:6]}"
            for i in range(batches):
                store.append(
                    agg,
                    "Account",
                    i * 100,
                    [NewEvent(new_event_id(), "Deposited", data) for _ in range(100)],
                )
            return batches * 100

        def raw_batches(engine: _RawPg) -> Callable[[], int]:
            def go() -> int:
                agg = f"rb{uuid.uuid4().hex[:6]}"
                for _ in range(batches):
                    engine.batch(conns[0], agg, 100)
                return batches * 100

            return go

        rates = _rate(
            {"ours": ours_batches, "raw": raw_batches(raw), "raw-nolock": raw_batches(bare)},
            rounds,
            "100-event appends",
        )
        figures.append(_fig("append of 100 events/txn", rates, "events/s"))
        figures.append(_nolock("append of 100 events/txn", rates, "events/s"))

        target = 20_000 if quick else 100_000
        while store.count_events() < target:
            ours_batches()
        total = store.count_events()

        def ours_read() -> int:
            return sum(1 for _ in store.iter_all())

        def raw_read() -> int:
            n, after = 0, 0
            with store.reading() as conn:
                while True:
                    rows = conn.execute(
                        "SELECT event_id, aggregate_id, aggregate_type, event_type, version, "
                        "position, timestamp, data, metadata, constraints FROM events "
                        "WHERE position > %s ORDER BY position LIMIT 1000",
                        (after,),
                    ).fetchall()
                    n += len(rows)
                    if len(rows) < 1000:
                        return n
                    after = rows[-1][5]

        rates = _rate({"ours": ours_read, "raw": raw_read}, rounds, f"log read ({total:,})")
        figures.append(
            Figure(
                TOPIC,
                f"read whole log, iter_all ({total:,} events)",
                rates["ours"],
                "events/s",
                "raw psycopg, same paged SELECT",
                rates["raw"],
                target_text=">= 200,000 events/s",
                meets_target=rates["ours"] >= 200_000,
            )
        )
        for conn in conns:
            conn.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return figures


def _fig(name: str, rates: dict[str, float], unit: str) -> Figure:
    raise_ = rates["ours"] / rates["raw"] >= 0.7
    return Figure(
        TOPIC,
        name,
        rates["ours"],
        unit,
        "raw psycopg, same statements, lock included",
        rates["raw"],
        target_text=">= 0.7x raw",
        meets_target=raise_,
    )


def _nolock(name: str, rates: dict[str, float], unit: str) -> Figure:
    return Figure(
        TOPIC,
        name,
        rates["ours"],
        unit,
        "raw psycopg, same statements, NO position lock (incorrect)",
        rates["raw-nolock"],
    )


# -- SQLite ------------------------------------------------------------------------------------
def _sqlite(quick: bool) -> list[Figure]:
    rounds = 1 if quick else 3
    ops = 300 if quick else 1500
    figures: list[Figure] = []
    data = b"x" * 40
    with tempfile.TemporaryDirectory(prefix="eventstore-bench-pg-sqlite-") as tmp:
        path = os.path.join(tmp, "events.db")
        with SQLiteEventStore(path) as store:
            raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA synchronous=FULL")
            raw_lock = threading.Lock()
            m = "?"

            def raw_command(agg: str, cid: str) -> None:
                with raw_lock:
                    raw.execute("BEGIN IMMEDIATE")
                    now = time.time_ns() // 1000
                    version = raw.execute(
                        _CHECK.format(m=m).replace("AS one ", ""), (agg, cid)
                    ).fetchone()[0]
                    eid = deterministic_event_id(cid, agg, 0)
                    raw.execute(
                        _INSERT.format(v=", ".join("?" * 9)),
                        (
                            eid,
                            agg,
                            "Account",
                            "Deposited",
                            (version or 0) + 1,
                            now,
                            data,
                            '{"causation_id":"' + cid + '"}',
                            None,
                        ),
                    )
                    raw.execute(
                        "INSERT OR REPLACE INTO processed_commands "
                        "(command_id, aggregate_id, event_ids, processed_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (cid, agg, f'["{eid}"]', now, now + _TTL),
                    )
                    raw.execute("COMMIT")

            for clients in (1, 16):
                per = ops // clients

                def ours(clients: int = clients, per: int = per) -> int:
                    tag = uuid.uuid4().hex[:6]

                    def work(c: int, i: int) -> None:
                        cid, agg = f"{tag}-{c}-{i}", f"o{tag}-{c}-{i}"
                        store.append(
                            agg,
                            "Account",
                            0,
                            [NewEvent(deterministic_event_id(cid, agg, 0), "Deposited", data)],
                            command_id=cid,
                        )

                    return _clients(clients, per, work)

                def raw_go(clients: int = clients, per: int = per) -> int:
                    tag = uuid.uuid4().hex[:6]
                    return _clients(
                        clients, per, lambda c, i: raw_command(f"r{tag}-{c}-{i}", f"r{tag}-{c}-{i}")
                    )

                rates = _rate(
                    {"ours": ours, "raw": raw_go}, rounds, f"SQLite commands, {clients} client(s)"
                )
                figures.append(
                    Figure(
                        "sqlite",
                        f"idempotent command, 1 event/txn, FULL, {clients} client(s)",
                        rates["ours"],
                        "commands/s",
                        "raw sqlite3, same statements",
                        rates["raw"],
                        target_text=">= 0.7x raw",
                        meets_target=rates["ours"] >= 0.7 * rates["raw"],
                    )
                )
            batches = 20 if quick else 60

            def ours_batches() -> int:
                agg = f"b{uuid.uuid4().hex[:6]}"
                for i in range(batches):
                    store.append(
                        agg,
                        "Account",
                        i * 100,
                        [NewEvent(new_event_id(), "Deposited", data) for _ in range(100)],
                    )
                return batches * 100

            def raw_batches() -> int:
                agg = f"rb{uuid.uuid4().hex[:6]}"
                for i in range(batches):
                    raw.execute("BEGIN IMMEDIATE")
                    now = time.time_ns() // 1000
                    raw.execute("SELECT MAX(version) FROM events WHERE aggregate_id = ?", (agg,))
                    raw.executemany(
                        _INSERT.format(v=", ".join("?" * 9)),
                        [
                            (
                                new_event_id(),
                                agg,
                                "Account",
                                "Deposited",
                                i * 100 + k,
                                now,
                                data,
                                None,
                                None,
                            )
                            for k in range(1, 101)
                        ],
                    )
                    raw.execute("COMMIT")
                return batches * 100

            rates = _rate({"ours": ours_batches, "raw": raw_batches}, rounds, "SQLite batches")
            figures.append(
                Figure(
                    "sqlite",
                    "append of 100 events/txn, FULL",
                    rates["ours"],
                    "events/s",
                    "raw sqlite3, same statements",
                    rates["raw"],
                    target_text=">= 0.7x raw",
                    meets_target=rates["ours"] >= 0.7 * rates["raw"],
                )
            )
            target = 20_000 if quick else 100_000
            while store.count_events() < target:
                ours_batches()
            total = store.count_events()

            def ours_read() -> int:
                return sum(1 for _ in store.iter_all())

            def raw_read() -> int:
                n, after = 0, 0
                while True:
                    rows = raw.execute(
                        "SELECT event_id, aggregate_id, aggregate_type, event_type, version, "
                        "position, timestamp, data, metadata, constraints FROM events "
                        "WHERE position > ? ORDER BY position LIMIT 1000",
                        (after,),
                    ).fetchall()
                    n += len(rows)
                    if len(rows) < 1000:
                        return n
                    after = rows[-1][5]

            rates = _rate({"ours": ours_read, "raw": raw_read}, rounds, "SQLite read")
            figures.append(
                Figure(
                    "sqlite",
                    f"read whole log, iter_all ({total:,} events)",
                    rates["ours"],
                    "events/s",
                    "raw sqlite3, same paged SELECT",
                    rates["raw"],
                    target_text=">= 200,000 events/s",
                    meets_target=rates["ours"] >= 200_000,
                )
            )
            raw.close()
    return figures


def run(quick: bool | None = None) -> list[Figure]:
    """PostgreSQL and SQLite figures beside their raw drivers (``quick`` for a short run)."""
    quick = quick_requested() if quick is None else quick
    external = os.environ.get("EVENTSTORE_PG_DSN")
    figures: list[Figure] = []
    if external:
        figures += _postgres(external, quick)
    else:
        step(TOPIC, "starting an embedded PostgreSQL (fsync on)")
        with EmbeddedPostgres() as pg:
            figures += _postgres(pg.dsn, quick)
    figures += _sqlite(quick)
    return figures
