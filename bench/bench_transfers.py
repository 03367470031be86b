"""Transfers between accounts: through a process manager, beside the same in one unit.

Both on a fresh SQLite file per round (``synchronous=FULL``), 4 accounts, the
same seeded transfers. Baseline: each transfer as one ``UnitOfWork`` (load both
accounts, withdraw and deposit, ``append_many`` under one command id). Ours:
each transfer requested as an event, then ``ProcessRunner.drain()`` until every
transfer completed (a debit command, its event, a credit command, its event,
through the generated SDK's ``InProcessTransport``). The figure is the median
round's completed transfers per second.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from ._progress import quick_requested, step
from .common import Figure

TOPIC = "transfers"
ACCOUNTS = ["a", "b", "c", "d"]


def _plan(count: int) -> list[tuple[str, str, int]]:
    rng = random.Random(8)
    return [(*rng.sample(ACCOUNTS, 2), rng.randint(1, 5)) for _ in range(count)]


def _unit_round(folder: Path, plan: list[tuple[str, str, int]]) -> float:
    from eventstore import SQLiteEventStore, UnitOfWork
    from tests.support.transfers import (
        MoneyDepositedEvent,
        MoneyWithdrawnEvent,
        bank,
        open_accounts,
    )

    with SQLiteEventStore(folder / "unit.db") as store:
        transport, accounts = bank(store)
        open_accounts(transport, dict.fromkeys(ACCOUNTS, 10_000))
        start = time.perf_counter()
        for number, (source, target, amount) in enumerate(plan):
            a, b = accounts.load(source), accounts.load(target)
            with UnitOfWork(store, command_id=f"transfer-{number}") as uow:
                a.apply_change(MoneyWithdrawnEvent(amount=amount))
                b.apply_change(MoneyDepositedEvent(amount=amount))
                accounts.save(a, unit=uow)
                accounts.save(b, unit=uow)
        elapsed = time.perf_counter() - start
        assert sum(accounts.load(x).balance for x in ACCOUNTS) == 40_000
    return len(plan) / elapsed


def _process_round(folder: Path, plan: list[tuple[str, str, int]]) -> float:
    from eventstore import SQLiteEventStore
    from eventstore.sqlite.process_runner import ProcessRunner
    from tests.support.transfers import TransferProcess, bank, open_accounts, request_transfer

    with SQLiteEventStore(folder / "process.db") as store:
        transport, accounts = bank(store)
        open_accounts(transport, dict.fromkeys(ACCOUNTS, 10_000))
        runner = ProcessRunner(store, TransferProcess(), transport)
        start = time.perf_counter()
        for number, (source, target, amount) in enumerate(plan):
            request_transfer(store, f"t{number}", source, target, amount)
        runner.drain()
        elapsed = time.perf_counter() - start
        done = [runner.state(f"t{n}")["status"] for n in range(len(plan))]
        assert done == ["completed"] * len(plan), set(done)
        assert sum(accounts.load(x).balance for x in ACCOUNTS) == 40_000
    return len(plan) / elapsed


def run(quick: bool = False) -> list[Figure]:
    quick = quick or quick_requested()
    plan = _plan(60 if quick else 300)
    rounds = 1 if quick else 3
    unit: list[float] = []
    process: list[float] = []
    for number in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            step(TOPIC, f"round {number + 1}/{rounds}: {len(plan)} transfers in units")
            unit.append(_unit_round(Path(folder), plan))
            step(TOPIC, f"round {number + 1}/{rounds}: {len(plan)} transfers by a process manager")
            process.append(_process_round(Path(folder), plan))
    return [
        Figure(
            TOPIC,
            "transfers through a process manager (SQLite, FULL)",
            statistics.median(process),
            "transfers/s",
            "the same transfers, each one UnitOfWork (append_many)",
            statistics.median(unit),
        )
    ]
