"""Catch-up rate of a SQLite read-model projection, beside the raw log read rates.

Three figures from the same log, in the same run:
  * the projection runner catching a balance read model up from position 0,
    one SQLite transaction per batch (checkpoint in the same transaction);
  * the store's ``iter_all`` reading the same events (the runner's input);
  * a raw ``sqlite3`` read of the same rows (the floor under both).
Target: >= 50,000 events/s for the projection.

    .venv/bin/python -m bench.bench_projections [--events N]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure, format_row
from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import ProjectionManager
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel

TOPIC = "projections"
TARGET_RATE = 50_000
ACCOUNTS = 100

_UPSERT = (
    "INSERT INTO balances (account_id, balance, events) VALUES (?, ?, 1) "
    "ON CONFLICT (account_id) DO UPDATE SET balance = balance + excluded.balance, "
    "events = events + 1"
)


def _bank():  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.support.protos import compiled

    return compiled("bank")


class BalanceProjection:
    """The simple balance projection of the issue: one upsert per money event."""

    name = "balances"

    def __init__(self, pb: object) -> None:
        self.opened = pb.AccountOpened  # type: ignore[attr-defined]
        self.deposited = pb.MoneyDeposited  # type: ignore[attr-defined]
        self.withdrawn = pb.MoneyWithdrawn  # type: ignore[attr-defined]
        self.opened_type = self.opened.DESCRIPTOR.full_name
        self.deposited_type = self.deposited.DESCRIPTOR.full_name
        self.withdrawn_type = self.withdrawn.DESCRIPTOR.full_name

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute(
            "CREATE TABLE IF NOT EXISTS balances (account_id TEXT PRIMARY KEY, "
            "balance INTEGER NOT NULL, events INTEGER NOT NULL)"
        )
        ctx.connection.execute("DELETE FROM balances")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        kind = event.event_type
        if kind == self.deposited_type:
            amount = self.deposited.FromString(event.data).amount
        elif kind == self.withdrawn_type:
            amount = -self.withdrawn.FromString(event.data).amount
        elif kind == self.opened_type:
            amount = self.opened.FromString(event.data).initial_balance
        else:
            return
        ctx.connection.execute(_UPSERT, (event.aggregate_id, amount))


def _fill(store: SQLiteEventStore, pb: object, events: int) -> None:
    per_account = max(2, events // ACCOUNTS)
    opened = pb.AccountOpened(owner="o", initial_balance=100).SerializeToString()  # type: ignore[attr-defined]
    deposit = pb.MoneyDeposited(amount=7).SerializeToString()  # type: ignore[attr-defined]
    opened_type = pb.AccountOpened.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    deposit_type = pb.MoneyDeposited.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    chunk = 1000
    for a in range(ACCOUNTS):
        account = f"acc-{a}"
        version = 0
        while version < per_account:
            batch = []
            for v in range(version, min(per_account, version + chunk)):
                kind, data = (opened_type, opened) if v == 0 else (deposit_type, deposit)
                batch.append(NewEvent(new_event_id(), kind, data))
            store.append(account, "Account", version, batch)
            version += len(batch)


def run(events: int | None = None, repeat: int = 3, *, quick: bool = False) -> list[Figure]:
    """Measure the three rates; ``quick`` uses 20,000 events and one round."""
    if events is None:
        events = 20_000 if quick else 100_000
    if quick:
        repeat = 1
    pb = _bank()
    with tempfile.TemporaryDirectory(prefix="bench-projections-") as tmp:
        path = os.path.join(tmp, "events.db")
        with SQLiteEventStore(path, synchronous="NORMAL") as setup:
            _fill(setup, pb, events)
        store = SQLiteEventStore(path)
        total = store.head_position()

        def raw_read() -> float:
            conn = sqlite3.connect(path)
            start = time.perf_counter()
            n = 0
            for _row in conn.execute(
                "SELECT event_id, aggregate_id, aggregate_type, event_type, version, position, "
                "timestamp, data, metadata, constraints FROM events ORDER BY position"
            ):
                n += 1
            elapsed = time.perf_counter() - start
            conn.close()
            assert n == total
            return n / elapsed

        def log_read() -> float:
            start = time.perf_counter()
            n = sum(1 for _ in store.iter_all(0))
            elapsed = time.perf_counter() - start
            assert n == total
            return n / elapsed

        def projection_catch_up(run_number: int) -> float:
            model = SQLiteReadModel(os.path.join(tmp, f"read-model-{run_number}.db"))
            manager = ProjectionManager(store, batch_size=1000)
            manager.register(BalanceProjection(pb), read_model=model)
            start = time.perf_counter()
            handled = manager.catch_up()["balances"]
            elapsed = time.perf_counter() - start
            assert handled == total, (handled, total)
            (count,) = model.query("SELECT SUM(events) FROM balances")[0]
            assert count == total
            model.close()
            return handled / elapsed

        raw_rates, log_rates, projection_rates = [], [], []
        for i in range(repeat):  # interleaved, so noise hits all three alike
            raw_rates.append(raw_read())
            log_rates.append(log_read())
            projection_rates.append(projection_catch_up(i))
        store.close()

    raw, log_rate, rate = max(raw_rates), max(log_rates), max(projection_rates)
    note = f"{total:,} events, best of {repeat}"
    return [
        Figure(
            TOPIC,
            f"log read, iter_all ({note})",
            log_rate,
            "events/s",
            "raw sqlite3 read of the same rows",
            raw,
        ),
        Figure(
            TOPIC,
            f"SQLite read-model catch-up, 1 transaction per 1000 events ({note})",
            rate,
            "events/s",
            "log read, iter_all",
            log_rate,
            target_text=f">= {TARGET_RATE:,} events/s",
            meets_target=rate >= TARGET_RATE,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for figure in run(args.events, args.repeat, quick=args.quick):
        print(format_row(figure))


if __name__ == "__main__":
    main()
