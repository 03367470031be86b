"""SIGKILL a process manager's runner mid-burst of transfers: nothing lost, nothing twice.

Once per store (SQLite file, PostgreSQL schema): the runners share one core,
so what differs, and what this proves for each, is that its SQL keeps the
decisions, the outbox and the timeouts in the checkpoint's transaction.
"""

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

from tests.support.process_stores import ProcessStore
from tests.support.transfers import TransferProcess, bank, open_accounts, request_transfer

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = ["a", "b", "c", "d"]
TRANSFERS = 40
KILLS = 3
#: The runners' claim on an outbox command (seconds): a killed runner's claims hold this long.
LEASE = 0.5

RUNNER = textwrap.dedent(
    """
    import sys
    from tests.support.process_stores import open_from_argv
    from tests.support.transfers import TransferProcess, bank

    store, ProcessRunner = open_from_argv(sys.argv[1:-1])
    transport, _ = bank(store)
    print("ready", flush=True)
    while True:
        ProcessRunner(
            store, TransferProcess(), transport, batch_size=3, claim_lease=float(sys.argv[-1])
        ).drain()
    """
)


def _progress(store: object) -> int:
    return store.count_events()  # type: ignore[attr-defined]


@pytest.mark.slow
def test_killed_runner_restarts_and_every_transfer_ends_once(
    process_store: ProcessStore,
) -> None:
    rng = random.Random(13)
    with process_store.open() as store:
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
    watcher = process_store.open()
    try:
        for kill in range(KILLS):
            proc = subprocess.Popen(
                [sys.executable, "-c", RUNNER, *process_store.argv, str(LEASE)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
            )
            try:
                assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
                target = start + (kill + 1) * 12
                while _progress(watcher) < target and time.monotonic() < deadline:
                    time.sleep(0.01)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
    finally:
        watcher.close()
    with process_store.open() as store:
        transport, repository = bank(store)
        runner = process_store.runner(store, TransferProcess(), transport, claim_lease=LEASE)
        killed_at = store.count_events()
        time.sleep(LEASE)  # a command a runner was killed while sending is sent once its claim ends
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
