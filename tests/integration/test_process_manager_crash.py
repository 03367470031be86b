"""SIGKILL a process manager's runner mid-burst of transfers: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.process_runner import ProcessRunner
from tests.support.transfers import TransferProcess, bank, open_accounts, request_transfer

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = ["a", "b", "c", "d"]
TRANSFERS = 40
KILLS = 3

RUNNER = textwrap.dedent(
    """
    import sys
    from eventstore.sqlite import SQLiteEventStore
    from eventstore.sqlite.process_runner import ProcessRunner
    from tests.support.transfers import TransferProcess, bank

    store = SQLiteEventStore(sys.argv[1])
    transport, _ = bank(store)
    print("ready", flush=True)
    while True:
        ProcessRunner(store, TransferProcess(), transport, batch_size=3).drain()
    """
)


def _progress(path: Path) -> int:
    with SQLiteEventStore(path) as store:
        return store.count_events()


@pytest.mark.slow
def test_killed_runner_restarts_and_every_transfer_ends_once(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    rng = random.Random(13)
    with SQLiteEventStore(path) as store:
        transport, repository = bank(store)
        open_accounts(transport, dict.fromkeys(ACCOUNTS, 1000))
        for i in range(TRANSFERS):
            source, target = rng.sample(ACCOUNTS, 2)
            if i % 7 == 3:
                target = "closed-or-missing"  # refused credit: compensated by a refund
            amount = 5000 if i % 11 == 5 else rng.randint(1, 50)  # refused debit: failed
            request_transfer(store, f"t{i}", source, target, amount)
        start = store.count_events()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    deadline = time.monotonic() + 60
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(path)], cwd=ROOT, env=env, stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            target = start + (kill + 1) * 12
            while _progress(path) < target and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    with SQLiteEventStore(path) as store:
        transport, repository = bank(store)
        runner = ProcessRunner(store, TransferProcess(), transport)
        killed_at = store.count_events()
        runner.drain()
        assert store.count_events() > killed_at  # the kills came mid-burst: work was left
        outcomes = Counter(runner.state(f"t{i}")["status"] for i in range(TRANSFERS))
        assert set(outcomes) <= {"completed", "compensated", "failed"}, outcomes
        assert outcomes["compensated"] >= 1 and outcomes["failed"] >= 1
        assert sum(repository.load(a).balance for a in ACCOUNTS) == 1000 * len(ACCOUNTS)
        # No command applied twice: events per (command id, account), counted, not inferred.
        applied = Counter(
            (e.metadata.causation_id, e.aggregate_id)
            for e in store.read_all()
            if e.aggregate_type == "Account" and e.version > 1
        )
        assert applied and set(applied.values()) == {1}
        assert runner.pending_commands() == []
