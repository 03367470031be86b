"""Two PostgreSQL runners of one process manager at once: each timeout fires once, each
command is applied once, and neither deadlocks the other (bounded: 24 transfers)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from eventstore.postgres import ProcessRunner
from tests.support import postgres
from tests.support.transfers import TransferProcess, bank, open_accounts, request_transfer

TRANSFERS = 24
LATER = 3600 * 1_000_000


class CountingTimeouts(TransferProcess):
    """The transfer process, counting its timeouts in its state (a second firing shows)."""

    def timed_out(self, process, step):  # type: ignore[no-untyped-def]
        process.state["fired"] = process.state.get("fired", 0) + 1
        super().timed_out(process, step)


def test_two_runners_fire_each_timeout_once_and_apply_each_command_once() -> None:
    with postgres.open_store(pool_size=4) as store:
        transport, repository = bank(store)
        open_accounts(transport, {"a": 10_000, "b": 10_000})
        for i in range(TRANSFERS):
            request_transfer(store, f"t{i}", "a" if i % 2 else "b", "b" if i % 2 else "a", 10)
        runners = [ProcessRunner(store, CountingTimeouts(), transport) for _ in range(2)]
        runners[0].decide()  # every debit queued, every deadline armed
        assert len(runners[0].timeouts()) == TRANSFERS
        errors: list[BaseException] = []
        fired: list[int] = []

        def work(runner: ProcessRunner) -> None:
            try:
                fired.append(runner.fire_timeouts(now=time.time_ns() // 1000 + LATER))
                asyncio.run(runner.drain_async())
            except BaseException as exc:  # reported below, with the thread's other failures
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(r,)) for r in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        assert sum(fired) == TRANSFERS
        states = [runners[0].state(f"t{i}") for i in range(TRANSFERS)]
        assert {s["fired"] for s in states} == {1}
        assert {s["status"] for s in states} == {"compensated"}  # late debits refunded
        applied = Counter(
            (e.metadata.causation_id, e.aggregate_id)
            for e in store.read_all()
            if e.aggregate_type == "Account" and e.version > 1
        )
        assert len(applied) == 2 * TRANSFERS and set(applied.values()) == {1}
        assert repository.load("a").balance + repository.load("b").balance == 20_000


def test_firing_timeouts_while_another_runner_cancels_them_ends_each_transfer_once() -> None:
    """One runner decides the debits' events (cancelling deadlines, holding their processes)
    while another fires those deadlines: one lock order, so no deadlock, and each transfer
    either completes (cancelled in time) or is refunded (fired first), never both."""
    with postgres.open_store(pool_size=4) as store:
        transport, repository = bank(store)
        open_accounts(transport, {"a": 10_000, "b": 10_000})
        for i in range(TRANSFERS):
            request_transfer(store, f"t{i}", "a" if i % 2 else "b", "b" if i % 2 else "a", 10)
        deciding = ProcessRunner(store, CountingTimeouts(), transport, batch_size=4)
        firing = ProcessRunner(store, CountingTimeouts(), transport)
        deciding.decide()
        asyncio.run(deciding.send_pending())  # every debit applied; its events not yet decided
        errors: list[BaseException] = []

        def run(job) -> None:  # type: ignore[no-untyped-def]
            try:
                job()
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(deciding.decide,)),
            threading.Thread(
                target=run, args=(lambda: firing.fire_timeouts(now=time.time_ns() // 1000 + LATER),)
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        deciding.drain()
        firing.fire_timeouts(now=time.time_ns() // 1000 + LATER)
        deciding.drain()
        states = [deciding.state(f"t{i}") for i in range(TRANSFERS)]
        assert {s["status"] for s in states} <= {"completed", "compensated"}
        assert all(s.get("fired", 0) <= 1 for s in states)
        assert deciding.timeouts() == [] and deciding.pending_commands() == []
        assert repository.load("a").balance + repository.load("b").balance == 20_000
