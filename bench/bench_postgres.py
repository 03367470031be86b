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
from eventstore.postgres.store import _INSERT_STREAM_EVENTS
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
        """The store's statements for a 100-event append: the lock, MAX(version), one
        INSERT of every event (one array per column, unnested), the notification."""
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
            conn.execute(
                _INSERT_STREAM_EVENTS,
                (
                    aggregate,
                    "Account",
                    now,
                    [new_event_id() for _ in range(size)],
                    ["Deposited"] * size,
                    [version + i for i in range(1, size + 1)],
                    [b"x" * 40] * size,
                    [None] * size,
                    [None] * size,
                ),
            ).fetchall()
            if self.lock:
                conn.execute("SELECT pg_notify(%s, %s)", (f"eventstore_{self.schema}", "1"))

    def batch_values(self, conn: psycopg.Connection, aggregate: str, size: int) -> None:
        """The statement the store used before: a VALUES list of 9 placeholders a row,
        whose text grows with the count (parsed anew by psycopg and the server each time)."""
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
    rounds = 3
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

                per = ops if clients == 1 else ops * 4 // clients
                return _clients(clients, per, work)

            return go

        def raw_go(engine: _RawPg, clients: int) -> Callable[[], int]:
            def go() -> int:
                tag = uuid.uuid4().hex[:6]
                per = ops if clients == 1 else ops * 4 // clients
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

        # 100-event appends are few and short: more rounds, so one noisy round (the
        # machine is shared) does not decide the median.
        batches, batch_rounds = (10, 5) if quick else (30, 7)

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

        def raw_batches(engine: _RawPg, values: bool = False) -> Callable[[], int]:
            def go() -> int:
                agg = f"rb{uuid.uuid4().hex[:6]}"
                write = engine.batch_values if values else engine.batch
                for _ in range(batches):
                    write(conns[0], agg, 100)
                return batches * 100

            return go

        rates = _rate(
            {
                "ours": ours_batches,
                "raw": raw_batches(raw),
                "raw-nolock": raw_batches(bare),
                "raw-values": raw_batches(raw, values=True),
            },
            batch_rounds,
            "100-event appends",
        )
        figures.append(_fig("append of 100 events/txn", rates, "events/s"))
        figures.append(_nolock("append of 100 events/txn", rates, "events/s"))
        figures.append(
            Figure(
                TOPIC,
                "append of 100 events/txn",
                rates["ours"],
                "events/s",
                "raw psycopg, lock included, the previous statement (multi-row VALUES)",
                rates["raw-values"],
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
    """``SQLiteEventStore`` beside ``bench._raw``: a connection set up like the store's
    (WAL, the same ``synchronous``, the same WAL checkpoint interval, the store's own
    schema) on a file of its own, running the store's statements.

    Before, the raw side opened the store's file with SQLite's default checkpoint
    interval (1,000 pages, the store's is 10,000), so its commits ran most of the
    checkpoints of both, and each figure was one short round: the store came out at
    2.3x raw in one run and 0.57x in another.
    """
    from . import _raw

    rounds = 3
    ops = 1200 if quick else 3000
    figures: list[Figure] = []
    data = b"x" * 40
    with tempfile.TemporaryDirectory(prefix="eventstore-bench-pg-sqlite-") as tmp:
        path = os.path.join(tmp, "events.db")
        with SQLiteEventStore(path, synchronous="FULL") as store:
            raw = _raw.connect(os.path.join(tmp, "raw.db"), "FULL")
            # One writer connection: threads take turns, one transaction per command
            # (what a store without group commit does).
            raw_lock = threading.Lock()

            def raw_command(agg: str, cid: str) -> None:
                with raw_lock:
                    _raw.save_one_with_command(raw, agg, 0, cid, "Deposited", data)

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
                        "raw sqlite3, same statements"
                        + (", one transaction per command" if clients > 1 else ""),
                        rates["raw"],
                        target_text=">= 0.7x raw",
                        meets_target=rates["ours"] >= 0.7 * rates["raw"],
                    )
                )
            batches, batch_rounds = (10, 5) if quick else (30, 7)

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
                    _raw.append_batch(
                        raw,
                        agg,
                        i * 100,
                        [(new_event_id(), "Deposited", data) for _ in range(100)],
                    )
                return batches * 100

            rates = _rate(
                {"ours": ours_batches, "raw": raw_batches}, batch_rounds, "SQLite batches"
            )
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
            reader = _raw.connect(path, "FULL")  # the same rows, read raw

            def ours_read() -> int:
                return sum(1 for _ in store.iter_all())

            def raw_read() -> int:
                return _raw.read_all(reader)

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
            reader.close()
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
