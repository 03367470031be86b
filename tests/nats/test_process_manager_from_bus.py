"""A process manager fed from the NATS bus: the store relayed to JetStream, the runner reading it.

The runner's state, outbox, timeouts and checkpoint stay in the store; only
the events it decides on come from the bus (``source=``). A second runner,
started after the first stopped part-way, goes on from the stored checkpoint:
every transfer ends completed, compensated or failed, and no command is
applied twice (counted as events per command id and aggregate).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from eventstore.nats import EmbeddedNATS, NatsEventBus, Relay
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.process_runner import ProcessRunner
from tests.support.transfers import (
    TransferProcess,
    balances,
    bank,
    open_accounts,
    request_transfer,
)

pytestmark = pytest.mark.timeout(120)

ENDED = ("completed", "compensated", "failed")


def _commands_applied(store: SQLiteEventStore) -> Counter[tuple[str, str]]:
    return Counter(
        (e.metadata.causation_id, e.aggregate_id)
        for e in store.read_all()
        if e.metadata.causation_id and e.aggregate_type == "Account"
    )


async def _run_until(runner: ProcessRunner, relay: Relay, done, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    relaying = asyncio.create_task(relay.run())
    deciding = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, (
                f"the process manager did not finish in {timeout} s: relay {relay.status()}, "
                f"runner {runner.projections.statuses()}"
            )
            await asyncio.sleep(0.05)
    finally:
        runner.stop()
        relay.stop()
        await asyncio.wait_for(asyncio.gather(relaying, deciding), 15)


def test_a_process_manager_reads_the_bus_and_applies_each_command_once(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    with (
        SQLiteEventStore(tmp_path / "bank.db") as store,
        NatsEventBus(
            nats_server.url, stream="T_PM_BUS", subject_prefix="tpmbus", store=store
        ) as bus,
    ):
        transport, repository = bank(store)
        open_accounts(transport, {"a": 100, "b": 100})
        first = [f"t{i}" for i in range(6)]
        for i, transfer in enumerate(first):
            source, target = ("a", "b") if i % 2 else ("b", "a")
            request_transfer(store, transfer, source, target, 10)
        request_transfer(store, "refunded", "a", "nobody", 5)  # the credit is refused
        relay = Relay(store, bus, poll_interval=0.05)

        runner = ProcessRunner(store, TransferProcess(), transport, source=bus, poll_interval=0.02)
        assert runner.projections.source is bus

        def first_ended() -> bool:
            return all((runner.state(t) or {}).get("status") in ENDED for t in first)

        asyncio.run(_run_until(runner, relay, first_ended))

        # More work while no runner runs; a new runner resumes from the stored checkpoint.
        later = [f"u{i}" for i in range(4)]
        for transfer in later:
            request_transfer(store, transfer, "a", "b", 1)
        again = ProcessRunner(store, TransferProcess(), transport, source=bus, poll_interval=0.02)

        def all_ended() -> bool:
            return all(
                (again.state(t) or {}).get("status") in ENDED for t in [*first, *later, "refunded"]
            )

        # A stopped relay stays stopped (the stop rule): the second phase gets a new one.
        asyncio.run(_run_until(again, Relay(store, bus, poll_interval=0.05), all_ended))

        assert {t: again.state(t)["status"] for t in first + later} == dict.fromkeys(
            first + later, "completed"
        )
        assert again.state("refunded")["status"] == "compensated"
        assert balances(repository, ["a", "b"]) == {"a": 100 - 4, "b": 100 + 4}
        applied = _commands_applied(store)
        assert applied and set(applied.values()) == {1}, applied
        # Every event the runner decided on came through the bus, in the store's order.
        assert [e.position for e in bus.read_all(0)] == [e.position for e in store.read_all()]
