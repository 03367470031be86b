"""Property: any interleaving of transfers, runner steps, due timeouts and restarts keeps
the money constant once drained, and applies no command twice.

200 examples on SQLite; 40 on PostgreSQL (a fresh schema each, created with
its migrations), where the runner differs only in its SQL.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.process_stores import ProcessStore, postgres_store, sqlite_store
from tests.support.transfers import TransferProcess, bank, open_accounts, request_transfer

ACCOUNTS = ["a", "b", "c"]
LATER = 3600 * 1_000_000  # an hour: every deadline is due

transfer = st.tuples(
    st.just("transfer"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from([*ACCOUNTS, "nobody"]),
    st.integers(1, 150),
)
step = st.tuples(st.sampled_from(["decide", "send", "timeouts", "restart", "reopen"]))
operations = st.lists(st.one_of(transfer, step), min_size=1, max_size=25)


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(operations)
def test_interleavings_keep_the_money_constant(ops) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _check_interleaving(sqlite_store(Path(folder)), ops)


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=4000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(operations)
def test_interleavings_keep_the_money_constant_on_postgres(ops) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _check_interleaving(postgres_store(Path(folder)), ops)


def _check_interleaving(process_store: ProcessStore, ops) -> None:
    ProcessRunner = process_store.runner
    store = process_store.open(synchronous="NORMAL")
    transport, repository = bank(store)
    open_accounts(transport, dict.fromkeys(ACCOUNTS, 100))
    runner = ProcessRunner(store, TransferProcess(), transport)
    transfers = 0
    try:
        for op in ops:
            kind = op[0]
            if kind == "transfer":
                _, source, target, amount = op
                if source != target:
                    request_transfer(store, f"t{transfers}", source, target, amount)
                    transfers += 1
            elif kind == "decide":
                runner.decide()
            elif kind == "send":
                asyncio.run(runner.send_pending())
            elif kind == "timeouts":
                runner.fire_timeouts(now=time.time_ns() // 1000 + LATER)
            elif kind == "restart":
                runner = ProcessRunner(store, TransferProcess(), transport)
            else:  # reopen the store: nothing in memory survives
                store.close()
                transport.router.close()
                store = process_store.open(synchronous="NORMAL")
                transport, repository = bank(store)
                runner = ProcessRunner(store, TransferProcess(), transport)
        runner.drain()
        runner.fire_timeouts(now=time.time_ns() // 1000 + LATER)
        runner.drain()
        assert sum(repository.load(a).balance for a in ACCOUNTS) == 100 * len(ACCOUNTS)
        for i in range(transfers):
            status = runner.state(f"t{i}")["status"]
            assert status in ("completed", "compensated") or status.endswith("failed")
        applied = Counter(
            (e.metadata.causation_id, e.aggregate_id)
            for e in store.read_all()
            if e.aggregate_type == "Account" and e.version > 1
        )
        assert set(applied.values()) <= {1}
    finally:
        store.close()
        transport.router.close()
