"""Store benchmarks of issue 2: saves, batch appends, reading the log, loading aggregates.

Every figure is measured beside its baselines in the same run, on temp files
in WAL mode: the raw ``sqlite3`` baseline (bench/_raw.py: the same statements
in the same transactions on the same schema) and the ``eventsourcing`` library
with its SQLite persistence (bench/_es_baseline.py: the same domain work).
Contenders take turns round by round (the order rotates), so a noisy spell on
the shared machine hits all of them alike; each figure is the median round.
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from eventstore import Repository, SQLiteEventStore
from eventstore.core.events import EventMetadata, NewEvent
from eventstore.core.ids import new_event_id
from eventstore.core.snapshots import EveryNEvents

from . import _es_baseline as es
from . import _raw as raw
from ._progress import quick_requested, step
from .common import Figure

TOPIC = "store"


@dataclass(frozen=True)
class Sizes:
    full_rounds: int
    full_ops: int
    normal_rounds: int
    normal_ops: int
    batch_rounds: int
    batch_ops: int
    read_events: int
    read_rounds: int
    load_repeats: int
    snapshot_repeats: int
    at_version_samples: int


# Many short rounds rather than a few long ones: a burst of load from other work
# on the shared machine then spoils a few rounds of every contender, not the
# whole figure of one, and the median drops those rounds.
FULL_SIZES = Sizes(
    full_rounds=31,
    full_ops=200,
    normal_rounds=31,
    normal_ops=800,
    batch_rounds=31,
    batch_ops=30,
    read_events=100_000,
    read_rounds=9,
    load_repeats=51,
    snapshot_repeats=501,
    at_version_samples=501,
)
QUICK_SIZES = Sizes(
    full_rounds=9,
    full_ops=60,
    normal_rounds=9,
    normal_ops=250,
    batch_rounds=9,
    batch_ops=10,
    read_events=20_000,
    read_rounds=5,
    load_repeats=15,
    snapshot_repeats=101,
    at_version_samples=101,
)


def _bank() -> tuple[type, Callable[..., Repository]]:  # type: ignore[type-arg]
    # Imported late: it compiles the test protos with grpcio-tools on first use.
    from tests.support.bank import Account, account_repository

    return Account, account_repository


def _interleaved_rates(
    label: str, contenders: dict[str, Callable[[int], object]], ops: int, rounds: int
) -> dict[str, float]:
    """Operations per second of each contender: the median of ``rounds`` rounds of ``ops``."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for name in names:  # warm-up: caches, first pages, statement cache
        contenders[name](max(1, ops // 10))
    for r in range(rounds):
        if r % 10 == 0 or r == rounds - 1:
            step(TOPIC, f"{label}: round {r + 1}/{rounds}")
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            contenders[name](ops)
            rates[name].append(ops / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def _interleaved_latencies(
    label: str, contenders: dict[str, Callable[[int], object]], args: list[int]
) -> dict[str, float]:
    """Median milliseconds per call of each contender, called in turn for each argument."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        for a in args[:3]:
            fn(a)
    step(TOPIC, f"{label}: {len(args)} calls each")
    names = list(contenders)
    for i, a in enumerate(args):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            fn = contenders[name]
            start = time.perf_counter()
            fn(a)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


# -- 1. single-event saves -----------------------------------------------------------
def _single_saves(tmp: str, level: str, rounds: int, ops: int) -> list[Figure]:
    Account, account_repository = _bank()
    store = SQLiteEventStore(os.path.join(tmp, f"ours-single-{level}.db"), synchronous=level)
    repo = account_repository(store)
    account = Account("acc-single")
    account.open("alice")
    repo.save_with_command(account, "open-acc-single")
    ours_ids = itertools.count()

    def ours(n: int) -> None:
        for _ in range(n):
            account.deposit(1)
            repo.save_with_command(account, f"cmd-{next(ours_ids)}")

    conn = raw.connect(os.path.join(tmp, f"raw-single-{level}.db"), level)
    deposit_type = "testbank.v1.MoneyDeposited"
    deposit_bytes = _bank_pb().MoneyDeposited(amount=1).SerializeToString()
    raw_state = {"version": 0}
    raw_ids = itertools.count()
    raw.save_one_with_command(
        conn, "acc-single", 0, "open-acc-single", "testbank.v1.AccountOpened", b"\n\x05alice"
    )
    raw_state["version"] = 1

    def raw_saves(n: int) -> None:
        version = raw_state["version"]
        ids = raw_ids
        for _ in range(n):
            raw.save_one_with_command(
                conn, "acc-single", version, f"cmd-{next(ids)}", deposit_type, deposit_bytes
            )
            version += 1
        raw_state["version"] = version

    plain = raw.connect(os.path.join(tmp, f"raw-plain-{level}.db"), level)
    plain_state = {"version": 0}

    def raw_plain(n: int) -> None:
        version = plain_state["version"]
        for _ in range(n):
            version += 1
            raw.save_one_plain(
                plain, "acc-single", version, new_event_id(), deposit_type, deposit_bytes
            )
        plain_state["version"] = version

    app = es.open_app(os.path.join(tmp, f"es-single-{level}.db"), level)
    es_account = es.EsAccount(owner="alice")
    app.save(es_account)

    def es_saves(n: int) -> None:
        for _ in range(n):
            es_account.deposit(1)
            app.save(es_account)

    rates = _interleaved_rates(
        f"single-event save_with_command at {level}",
        {"ours": ours, "raw": raw_saves, "eventsourcing": es_saves, "raw_plain": raw_plain},
        ops,
        rounds,
    )
    _check(store.stream_version("acc-single") == account.version, "our saves were all stored")
    es_levels = es.connection_synchronous(app)
    _check(es_levels == [{"FULL": 2, "NORMAL": 1}[level]], f"eventsourcing at {level}")
    store.close()
    conn.close()
    plain.close()
    app.close()

    name = f"save_with_command, 1 event/txn, synchronous={level}"
    raw_target = 0.8 if level == "FULL" else 0.7
    figures = [
        Figure(
            TOPIC,
            name,
            rates["ours"],
            "saves/s",
            "raw sqlite3, same statements",
            rates["raw"],
            target_text=f">= {raw_target}x raw",
            meets_target=rates["ours"] >= raw_target * rates["raw"],
        )
    ]
    es_fig = Figure(
        TOPIC, name, rates["ours"], "saves/s", "eventsourcing 9.5 SQLite", rates["eventsourcing"]
    )
    if level == "NORMAL":
        es_fig = Figure(
            TOPIC,
            name,
            rates["ours"],
            "saves/s",
            "eventsourcing 9.5 SQLite",
            rates["eventsourcing"],
            target_text=">= 1.2x eventsourcing",
            meets_target=rates["ours"] >= 1.2 * rates["eventsourcing"],
        )
    figures.append(es_fig)
    figures.append(
        Figure(
            TOPIC,
            name,
            rates["ours"],
            "saves/s",
            "raw sqlite3, event INSERT only (no command record, no checks)",
            rates["raw_plain"],
        )
    )
    return figures


def _bank_pb():  # type: ignore[no-untyped-def]
    from tests.support.bank import pb

    return pb


# -- 2. 100-event appends -------------------------------------------------------------
def _batch_appends(tmp: str, level: str, rounds: int, ops: int) -> list[Figure]:
    pb = _bank_pb()
    batch = 100
    deposit_type = "testbank.v1.MoneyDeposited"
    deposit_bytes = pb.MoneyDeposited(amount=1).SerializeToString()
    total_batches = ops * (rounds + 1) + ops // 10 + 2

    def id_batches() -> list[list[str]]:
        return [[new_event_id() for _ in range(batch)] for _ in range(total_batches)]

    step(TOPIC, f"100-event appends at {level}: making event ids")
    ours_ids, raw_ids = iter(id_batches()), iter(id_batches())

    store = SQLiteEventStore(os.path.join(tmp, f"ours-batch-{level}.db"), synchronous=level)
    ours_version = [0]

    def ours(n: int) -> None:
        version = ours_version[0]
        for _ in range(n):
            events = [NewEvent(i, deposit_type, deposit_bytes) for i in next(ours_ids)]
            store.append("acc-batch", "Account", version, events)
            version += batch
        ours_version[0] = version

    conn = raw.connect(os.path.join(tmp, f"raw-batch-{level}.db"), level)
    raw_version = [0]

    def raw_appends(n: int) -> None:
        version = raw_version[0]
        for _ in range(n):
            raw.append_batch(
                conn,
                "acc-batch",
                version,
                [(i, deposit_type, deposit_bytes) for i in next(raw_ids)],
            )
            version += batch
        raw_version[0] = version

    rates = _interleaved_rates(
        f"100-event appends at {level}", {"ours": ours, "raw": raw_appends}, ops, rounds
    )
    store.close()
    conn.close()
    return [
        Figure(
            TOPIC,
            f"append of 100 events/txn, synchronous={level}",
            rates["ours"] * batch,
            "events/s",
            "raw sqlite3 executemany, same statements",
            rates["raw"] * batch,
            target_text=">= 0.6x raw",
            meets_target=rates["ours"] >= 0.6 * rates["raw"],
        )
    ]


# -- 3. reading the whole log ----------------------------------------------------------
def _read_all(tmp: str, events: int, rounds: int) -> list[Figure]:
    pb = _bank_pb()
    per_aggregate = 100
    aggregates = events // per_aggregate
    deposit_type = "testbank.v1.MoneyDeposited"
    deposit_bytes = pb.MoneyDeposited(amount=1).SerializeToString()

    step(TOPIC, f"read the log: writing {events:,} events to our store and raw sqlite3 file")
    path = os.path.join(tmp, "ours-read.db")
    store = SQLiteEventStore(path, synchronous="NORMAL")
    for a in range(aggregates):
        meta = EventMetadata(causation_id=f"cmd-{a}", correlation_id=f"corr-{a}")
        store.append(
            f"acc-{a}",
            "Account",
            0,
            [
                NewEvent(new_event_id(), deposit_type, deposit_bytes, meta)
                for _ in range(per_aggregate)
            ],
        )
    conn = raw.connect(path, "NORMAL")  # reads the very same file

    step(TOPIC, f"read the log: writing {events:,} events with eventsourcing")
    app = es.open_app(os.path.join(tmp, "es-read.db"), "NORMAL")
    for _ in range(aggregates):
        account = es.EsAccount(owner="alice")
        for _ in range(per_aggregate - 1):
            account.deposit(1)
        app.save(account)

    def ours() -> int:
        n = 0
        for _event in store.iter_all():
            n += 1
        return n

    def raw_read() -> int:
        return raw.read_all(conn)

    recorder = app.recorder
    to_domain_event = app.mapper.to_domain_event

    def es_read(decode: bool) -> Callable[[], int]:
        def read() -> int:
            n = 0
            last = 0
            while True:
                page = recorder.select_notifications(last, 1000, inclusive_of_start=False)
                if decode:
                    for notification in page:
                        to_domain_event(notification)
                n += len(page)
                if len(page) < 1000:
                    return n
                last = page[-1].id

        return read

    contenders: dict[str, Callable[[], int]] = {
        "ours": ours,
        "raw": raw_read,
        "es_notifications": es_read(False),
        "es_decoded": es_read(True),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for name, fn in contenders.items():
        _check(fn() == events, f"{name} read every event")
    names = list(contenders)
    for r in range(rounds):
        step(TOPIC, f"read the log ({events:,} events): round {r + 1}/{rounds}")
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = contenders[name]
            start = time.perf_counter()
            fn()
            rates[name].append(events / (time.perf_counter() - start))
    rate = {name: statistics.median(v) for name, v in rates.items()}
    store.close()
    conn.close()
    app.close()
    name = "read whole log as Event envelopes (iter_all, lazy payload/metadata)"
    return [
        Figure(
            TOPIC,
            name,
            rate["ours"],
            "events/s",
            "raw sqlite3 rows, same paged SELECT",
            rate["raw"],
            target_text=">= 400,000 events/s",
            meets_target=rate["ours"] >= 400_000,
        ),
        Figure(
            TOPIC,
            name,
            rate["ours"],
            "events/s",
            "eventsourcing notifications (not decoded)",
            rate["es_notifications"],
        ),
        Figure(
            TOPIC,
            name,
            rate["ours"],
            "events/s",
            "eventsourcing notifications decoded to domain events",
            rate["es_decoded"],
        ),
    ]


# -- 4 and 5. loading aggregates ---------------------------------------------------------
def _loads(tmp: str, sizes: Sizes) -> list[Figure]:
    Account, account_repository = _bank()
    figures: list[Figure] = []
    path = os.path.join(tmp, "ours-load.db")
    store = SQLiteEventStore(path, synchronous="NORMAL")
    repo = account_repository(store)
    conn = raw.connect(path, "NORMAL")
    app = es.open_app(os.path.join(tmp, "es-load.db"), "NORMAL", snapshots=True)

    step(TOPIC, "loads: writing 1,000-event aggregates (ours, eventsourcing)")

    def ours_aggregate(aggregate_id: str, events: int, repository: Repository) -> object:  # type: ignore[type-arg]
        account = Account(aggregate_id)
        account.open("alice")
        for _ in range(events - 1):
            account.deposit(1)
            if account.version % 100 == 0:
                repository.save(account)
        repository.save(account)
        return account

    def es_aggregate(events: int) -> es.EsAccount:
        account = es.EsAccount(owner="alice")
        for _ in range(events - 1):
            account.deposit(1)
            if account.version % 100 == 0:
                app.save(account)
        app.save(account)
        return account

    ours_aggregate("plain-1000", 1000, repo)
    es_plain = es_aggregate(1000)
    ours_snap = ours_aggregate("snap-1000", 1000, repo)
    repo.save_snapshot(ours_snap)  # type: ignore[arg-type]
    es_snap = es_aggregate(1000)
    app.take_snapshot(es_snap.id)

    # 4. 1,000 events, no snapshot (eventsourcing's plain aggregate has none either).
    def check_load(account: object, version: int) -> None:
        _check(account.version == version, "loaded the whole aggregate")  # type: ignore[attr-defined]

    check_load(repo.load("plain-1000"), 1000)
    check_load(app.repository.get(es_plain.id), 1000)
    _check(store.latest_snapshot("plain-1000") is None, "no snapshot of the plain aggregate")
    ms = _interleaved_latencies(
        "load 1,000 events, no snapshot",
        {
            "ours": lambda _: repo.load("plain-1000"),
            "raw": lambda _: raw.load_stream(conn, "plain-1000"),
            "eventsourcing": lambda _: app.repository.get(es_plain.id),
        },
        list(range(sizes.load_repeats)),
    )
    name = "load aggregate of 1,000 events, no snapshot"
    figures += _load_figures(
        name,
        ms,
        "eventsourcing 9.5 SQLite",
        "<= 0.5x eventsourcing's time",
        ms["ours"] <= 0.5 * ms["eventsourcing"],
    )

    # 5a. From a snapshot at the last version.
    check_load(repo.load("snap-1000"), 1000)
    check_load(app.repository.get(es_snap.id), 1000)
    ms = _interleaved_latencies(
        "load 1,000-event aggregate from its snapshot",
        {
            "ours": lambda _: repo.load("snap-1000"),
            "raw": lambda _: raw.load_stream(conn, "snap-1000"),
            "eventsourcing": lambda _: app.repository.get(es_snap.id),
        },
        list(range(sizes.snapshot_repeats)),
    )
    name = "load aggregate of 1,000 events from a snapshot"
    figures += _load_figures(
        name, ms, "eventsourcing 9.5 SQLite, snapshot", "< 0.5 ms", ms["ours"] < 0.5
    )

    # 5b. load(id, at_version=N) in a 10,000-event stream with snapshots every 100.
    step(TOPIC, "loads: writing a 10,000-event aggregate with a snapshot every 100 (ours)")
    snap_repo = account_repository(store, snapshot_strategy=EveryNEvents(100))
    ours_aggregate("long-10000", 10_000, snap_repo)
    _check(len(store.list_snapshots("long-10000")) == 100, "100 snapshots of the long aggregate")
    step(TOPIC, "loads: the same with eventsourcing (take_snapshot every 100 versions)")
    es_long = es_aggregate(10_000)
    for v in range(100, 10_001, 100):
        app.take_snapshot(es_long.id, version=v)
    rng = random.Random(2)
    versions = [rng.randint(1, 10_000) for _ in range(sizes.at_version_samples)]
    for v in versions[:5]:
        check_load(snap_repo.load("long-10000", at_version=v), v)
        check_load(app.repository.get(es_long.id, version=v), v)
    ms = _interleaved_latencies(
        "load(id, at_version=random N) of 10,000 events",
        {
            "ours": lambda v: snap_repo.load("long-10000", at_version=v),
            "raw": lambda v: raw.load_stream(conn, "long-10000", v),
            "eventsourcing": lambda v: app.repository.get(es_long.id, version=v),
        },
        versions,
    )
    name = "load(id, at_version=random N), 10,000 events, snapshot every 100"
    figures += _load_figures(
        name, ms, "eventsourcing 9.5 SQLite, snapshots every 100", "< 2 ms", ms["ours"] < 2.0
    )
    store.close()
    conn.close()
    app.close()
    return figures


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"benchmark sanity check failed: {what}")


def run(quick: bool | None = None) -> list[Figure]:
    """Every store figure with its baselines; ``quick`` (or ``--quick``) for a short run."""
    sizes = QUICK_SIZES if (quick_requested() if quick is None else quick) else FULL_SIZES
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="eventstore-bench-store-") as tmp:
        figures += _single_saves(tmp, "FULL", sizes.full_rounds, sizes.full_ops)
        figures += _single_saves(tmp, "NORMAL", sizes.normal_rounds, sizes.normal_ops)
        figures += _batch_appends(tmp, "NORMAL", sizes.batch_rounds, sizes.batch_ops)
        figures += _batch_appends(tmp, "FULL", sizes.batch_rounds, sizes.batch_ops)
        figures += _read_all(tmp, sizes.read_events, sizes.read_rounds)
        figures += _loads(tmp, sizes)
    return figures


def _load_figures(
    name: str, ms: dict[str, float], es_label: str, target_text: str, meets_target: bool
) -> list[Figure]:
    """A load time beside the eventsourcing library's and beside raw row fetching."""
    return [
        Figure(
            TOPIC,
            name,
            ms["ours"],
            "ms",
            es_label,
            ms["eventsourcing"],
            higher_is_better=False,
            target_text=target_text,
            meets_target=meets_target,
        ),
        Figure(
            TOPIC,
            name,
            ms["ours"],
            "ms",
            "raw sqlite3 rows, same SELECTs, no decoding",
            ms["raw"],
            higher_is_better=False,
        ),
    ]
