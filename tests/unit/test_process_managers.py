"""Process managers on every store: decisions with the checkpoint, an outbox, durable timeouts.

The runner's tests take the ``process_store`` fixture (SQLite and PostgreSQL,
tests/support/process_stores.py): one shared core, each adapter's SQL.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta

from eventstore.core.process_managers import Process, ProcessManager, process_command_id
from tests.support.transfers import (
    DepositCommand,
    TransferProcess,
    TransferRequested,
    balances,
    bank,
    open_accounts,
    request_transfer,
)


def _setup(process_store):
    store = process_store.open()
    transport, repository = bank(store)
    runner = process_store.runner(store, TransferProcess(), transport)
    return store, transport, repository, runner


def _commands_applied(store) -> Counter:
    """Events per (command id, aggregate): a command applied twice would count 2 runs."""
    return Counter(
        (e.metadata.causation_id, e.aggregate_id)
        for e in store.read_all()
        if e.metadata.causation_id and e.aggregate_type == "Account"
    )


def test_a_transfer_debits_then_credits(process_store):
    store, transport, repository, runner = _setup(process_store)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        runner.drain()
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}
        assert runner.state("t1")["status"] == "completed"
        assert runner.timeouts() == [] and runner.pending_commands() == []
        debit = process_command_id("transfers", store.read_all()[2].event_id, "debit")
        assert [e.event_type for e in store.read_all() if e.metadata.causation_id == debit] == [
            "account.v1.MoneyWithdrawnEvent"
        ]


def test_a_refused_credit_is_compensated_by_a_refund(process_store):
    store, transport, repository, runner = _setup(process_store)
    with store:
        open_accounts(transport, {"a": 100})
        request_transfer(store, "t1", "a", "nobody", 30)
        runner.drain()
        state = runner.state("t1")
        assert state["status"] == "compensated"
        assert state["errors"] == ["credit: ACCOUNT_NOT_FOUND"]
        assert balances(repository, ["a"]) == {"a": 100}


def test_a_refused_debit_fails_the_transfer(process_store):
    store, transport, repository, runner = _setup(process_store)
    with store:
        open_accounts(transport, {"a": 10, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        runner.drain()
        assert runner.state("t1")["status"] == "failed"
        assert balances(repository, ["a", "b"]) == {"a": 10, "b": 0}


def test_a_timeout_fires_from_its_table_and_a_late_debit_is_refunded(process_store):
    store, transport, repository, runner = _setup(process_store)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        runner.decide()  # decided and stored: the debit in the outbox, the deadline armed
        assert [(p, s) for p, s, _ in runner.timeouts()] == [("t1", "deadline")]
    # A new runner (a restart) finds the timeout in the table, not in memory.
    store, transport, repository, runner = _setup(process_store)
    with store:
        later = time.time_ns() // 1000 + 60_000_000
        assert runner.fire_timeouts(now=later) == 1
        assert runner.state("t1")["status"] == "timed out"
        runner.drain()  # the debit is sent after all: it is refunded
        assert runner.state("t1")["status"] == "compensated"
        assert balances(repository, ["a", "b"]) == {"a": 100, "b": 0}


def test_replaying_the_process_manager_applies_no_command_twice(process_store):
    store, transport, repository, runner = _setup(process_store)
    with store:
        open_accounts(transport, {"a": 100, "b": 100})
        for i in range(5):
            request_transfer(store, f"t{i}", "a" if i % 2 else "b", "b" if i % 2 else "a", 10)
        runner.drain()
        before = _commands_applied(store)
        # Start over on purpose, as ProjectionNotRebuildableError says (rebuild refuses):
        # drop the manager's rows and its checkpoint, then a new runner decides all again.
        for table in ("process_state", "process_outbox", "process_timeouts"):
            process_store.execute(store, f"DELETE FROM {table}")
        process_store.execute(
            store, "DELETE FROM projection_checkpoints WHERE name = 'process:transfers'"
        )
        runner = process_store.runner(store, TransferProcess(), transport)
        runner.drain()
        assert _commands_applied(store) == before
        assert set(before.values()) == {1}
        assert sum(balances(repository, ["a", "b"]).values()) == 200


def test_the_manager_sees_upcast_events(process_store):
    from eventstore import Upcasters
    from tests.support.transfers import TransferRequested

    old_type = "transfer.v0.TransferAsked"
    upcasters = Upcasters()
    upcasters.register(
        old_type,
        lambda e: e.with_payload(TransferRequested.DESCRIPTOR.full_name, e.data),
        to=TransferRequested.DESCRIPTOR.full_name,
    )
    store = process_store.open()
    transport, repository = bank(store)
    runner = process_store.runner(store, TransferProcess(), transport, upcasters=upcasters)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        message = TransferRequested(transfer_id="old", source="a", target="b", amount=7)
        from eventstore import EventMetadata, NewEvent, new_event_id

        store.append(
            "transfer-old",
            "Transfer",
            0,
            [
                NewEvent(
                    new_event_id(),
                    old_type,
                    message.SerializeToString(),
                    EventMetadata(correlation_id="old"),
                )
            ],
        )
        runner.drain()
        assert runner.state("old")["status"] == "completed"
        assert balances(repository, ["a", "b"]) == {"a": 93, "b": 7}


def test_a_process_command_id_is_the_same_for_the_same_event_and_step():
    first = process_command_id("transfers", "event-1", "debit")
    assert first == process_command_id("transfers", "event-1", "debit")
    assert (
        len(
            {
                first,
                process_command_id("transfers", "event-1", "credit"),
                process_command_id("transfers", "event-2", "debit"),
                process_command_id("other", "event-1", "debit"),
            }
        )
        == 4
    )


def test_a_step_sent_twice_for_one_event_is_refused():
    import pytest

    from eventstore.core.process_managers import Process
    from tests.support.transfers import WithdrawCommand

    process = Process("transfers", "t1", "event-1")
    process.send("debit", WithdrawCommand(account_id="a", amount=1))
    with pytest.raises(ValueError, match="sends step 'debit' twice"):
        process.send("debit", WithdrawCommand(account_id="a", amount=2))


# -- the manager's decisions alone, as Given/When/Then scenarios (no runner, no store) ---------
def _requested(amount: int = 30):  # type: ignore[no-untyped-def]
    from tests.support.transfers import TransferRequested

    return ("t1", TransferRequested(transfer_id="t1", source="a", target="b", amount=amount))


def test_a_request_decides_the_debit(process_kit):  # type: ignore[no-untyped-def]
    from tests.support.transfers import WithdrawCommand

    process_kit(TransferProcess).given(_requested()).then_commands(
        WithdrawCommand(account_id="a", amount=30)
    )


def test_the_confirmed_debit_decides_the_credit(process_kit):  # type: ignore[no-untyped-def]
    from tests.support.transfers import DepositCommand, MoneyWithdrawnEvent, WithdrawCommand

    process_kit(TransferProcess).given(
        _requested(), ("t1", MoneyWithdrawnEvent(amount=30))
    ).then_commands(
        WithdrawCommand(account_id="a", amount=30), DepositCommand(account_id="b", amount=30)
    )


def test_money_moved_outside_any_transfer_decides_nothing(process_kit):  # type: ignore[no-untyped-def]
    from tests.support.transfers import MoneyDepositedEvent, MoneyWithdrawnEvent

    scenario = process_kit(TransferProcess).given(
        ("a", MoneyWithdrawnEvent(amount=5)), ("b", MoneyDepositedEvent(amount=5))
    )
    scenario.then_commands()
    assert all(not p.state for p in scenario.processes.values())


def test_a_file_with_the_tables_of_before_tenants_gets_their_column(tmp_path):
    from eventstore.sqlite import SQLiteEventStore
    from eventstore.sqlite.process_runner import ProcessRunner

    path = tmp_path / "old.db"
    with SQLiteEventStore(path) as store, store._db.transaction() as conn:
        # The tables as the first SQLite runner made them: no tenant column.
        conn.execute(
            "CREATE TABLE process_state (manager TEXT NOT NULL, process_id TEXT NOT NULL,"
            " state TEXT NOT NULL, finished INTEGER NOT NULL DEFAULT 0,"
            " updated_at INTEGER NOT NULL, PRIMARY KEY (manager, process_id)) WITHOUT ROWID"
        )
        conn.execute(
            "CREATE TABLE process_outbox (command_id TEXT NOT NULL PRIMARY KEY,"
            " manager TEXT NOT NULL, process_id TEXT NOT NULL, step TEXT NOT NULL,"
            " command_type TEXT NOT NULL, data BLOB NOT NULL, created_at INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO process_state VALUES ('transfers', 'old', '{\"status\": \"debiting\"}',"
            " 0, 1)"
        )
    with SQLiteEventStore(path) as store:
        transport, repository = bank(store)
        runner = ProcessRunner(store, TransferProcess(), transport)
        assert runner.state("old") == {"status": "debiting"}
        open_accounts(transport, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        runner.drain()
        assert runner.state("t1")["status"] == "completed"
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}


class _FlakyWire:
    """A network-like transport (no router, no principal=): the first ``drops`` requests
    never arrive (``UNAVAILABLE``); the rest reach the in-process service."""

    def __init__(self, inner, drops: int) -> None:
        self.inner = inner
        self.drops = drops
        self.sent: list[dict[str, str]] = []

    async def request(self, subject, message, headers=None):
        from eventstore.core.responses import Response, transport_unavailable

        self.sent.append(dict(headers or {}))
        if self.drops:
            self.drops -= 1
            return Response.failure(transport_unavailable(subject, "?", "connection refused"))
        return await self.inner.request(subject, message, headers)


def test_a_lost_wire_leaves_the_command_to_send_again_with_its_id(process_store):
    import asyncio

    store = process_store.open()
    inner, repository = bank(store)
    wire = _FlakyWire(inner, drops=2)
    routes = [inner.router.route(subject) for subject in inner.router.subjects]
    runner = process_store.runner(store, TransferProcess(), wire, routes=routes)
    with store:
        open_accounts(inner, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        runner.decide()
        [(debit_id, *_)] = runner.pending_commands()
        assert asyncio.run(runner.send_pending()) == 0  # dropped: still in the outbox
        assert [c[0] for c in runner.pending_commands()] == [debit_id]
        runner.drain()  # dropped again: drain returns rather than spin on a dead wire
        assert [c[0] for c in runner.pending_commands()] == [debit_id]
        runner.drain()
        assert runner.state("t1")["status"] == "completed"
        assert [h["Es-Command-Id"] for h in wire.sent[:3]] == [debit_id] * 3
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}


def test_a_transport_without_a_router_needs_routes(process_store):
    import pytest

    store = process_store.open()
    with store, pytest.raises(ValueError, match="needs routes="):
        process_store.runner(store, TransferProcess(), _FlakyWire(None, 0))


def test_a_command_no_route_serves_is_an_error_naming_it(process_store):
    import asyncio

    import pytest

    store = process_store.open()
    inner, _ = bank(store)
    with store:
        open_accounts(inner, {"a": 100, "b": 0})
        runner = process_store.runner(store, TransferProcess(), _FlakyWire(inner, 0), routes=[])
        request_transfer(store, "t1", "a", "b", 30)
        runner.decide()
        with pytest.raises(ValueError, match="account.v1.WithdrawCommand but no route"):
            asyncio.run(runner.send_pending())


def test_run_polls_until_stopped(process_store):
    import asyncio

    store = process_store.open()
    transport, repository = bank(store)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        runner = process_store.runner(store, TransferProcess(), transport, poll_interval=0.01)

        async def scenario() -> None:
            task = asyncio.create_task(runner.run())
            await asyncio.sleep(0.05)
            await asyncio.to_thread(request_transfer, store, "t1", "a", "b", 30)
            for _ in range(500):
                if (runner.state("t1") or {}).get("status") == "completed":
                    break
                await asyncio.sleep(0.01)
            runner.stop()
            await asyncio.wait_for(task, 5)

        asyncio.run(scenario())
        assert runner.state("t1")["status"] == "completed"
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}


# -- re-armed timeouts: each firing is a decision of its own ------------------------------------
class _Reminder(ProcessManager):
    """On a transfer request, deposit 1 into the target every ``every``, ``times`` times:
    a timeout that re-arms itself and sends a command on each firing."""

    name = "reminders"
    event_types = (TransferRequested,)
    every = timedelta(seconds=10)
    times = 3

    def __init__(self) -> None:
        super().__init__()
        #: The command id each call of ``timed_out`` got from ``send`` (a failed one's too).
        self.ids: list[str] = []

    def react(self, process: Process, event, message) -> None:  # type: ignore[no-untyped-def]
        process.state.update(target=message.target, fired=0)
        process.schedule("remind", self.every)

    def timed_out(self, process: Process, step: str) -> None:
        process.state["fired"] += 1
        deposit = DepositCommand(account_id=process.state["target"], amount=1)
        self.ids.append(process.send("deposit", deposit))
        if process.state["fired"] < self.times:
            process.schedule("remind", self.every)


def _reminding(process_store, manager: _Reminder):  # type: ignore[no-untyped-def]
    store = process_store.open()
    transport, repository = bank(store)
    runner = process_store.runner(store, manager, transport)
    open_accounts(transport, {"a": 0, "b": 0})
    request_transfer(store, "t1", "a", "b", 1)
    runner.decide()
    return store, repository, runner


def _micros() -> int:
    return time.time_ns() // 1000


def test_each_firing_of_a_rearmed_timeout_applies_its_own_command(process_store):
    store, repository, runner = _reminding(process_store, _Reminder())
    with store:
        start = _micros()
        for firing in range(1, 4):
            assert runner.fire_timeouts(now=start + firing * 11_000_000) == 1
            assert asyncio.run(runner.send_pending()) == 1
        assert runner.state("t1")["fired"] == 3
        assert balances(repository, ["b"]) == {"b": 3}
        deposits = [e for e in store.read_all() if e.event_type.endswith("MoneyDepositedEvent")]
        assert len({e.metadata.causation_id for e in deposits}) == 3


def test_firings_of_a_rearmed_timeout_before_any_send_queue_one_command_each(process_store):
    store, repository, runner = _reminding(process_store, _Reminder())
    with store:
        start = _micros()
        for firing in range(1, 4):
            runner.fire_timeouts(now=start + firing * 11_000_000)
        assert len({command_id for command_id, *_ in runner.pending_commands()}) == 3
        runner.drain()
        assert balances(repository, ["b"]) == {"b": 3}


def test_a_timeout_rearmed_by_its_firing_is_due_its_delay_after_that_firing(process_store):
    store, _, runner = _reminding(process_store, _Reminder())
    with store:
        later = _micros() + 3600 * 1_000_000  # an hour ahead of the clock
        assert runner.fire_timeouts(now=later) == 1  # once, not again until the clock is there
        assert runner.timeouts() == [("t1", "remind", later + 10_000_000)]


def test_a_timeout_rearmed_without_delay_fires_once_per_call_with_new_ids(process_store):
    manager = _Reminder()
    manager.every = timedelta(0)
    store, _, runner = _reminding(process_store, manager)
    with store:
        later = _micros() + 1_000_000
        assert [runner.fire_timeouts(now=later) for _ in range(3)] == [1, 1, 0]
        assert len({command_id for command_id, *_ in runner.pending_commands()}) == 2


class _FailingOnce(_Reminder):
    """Fails its first firing after deciding the deposit: nothing of it commits."""

    failures = 1

    def timed_out(self, process: Process, step: str) -> None:
        super().timed_out(process, step)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("crashed after deciding, before committing")


def test_a_firing_decided_again_after_a_failure_sends_the_same_command_id(process_store):
    import pytest

    manager = _FailingOnce()
    store, _, runner = _reminding(process_store, manager)
    with store:
        later = _micros() + 11_000_000
        with pytest.raises(RuntimeError, match="crashed"):
            runner.fire_timeouts(now=later)
        assert runner.pending_commands() == [] and runner.state("t1")["fired"] == 0
        assert runner.fire_timeouts(now=later + 1) == 1
        first, again = manager.ids
        assert first == again
        assert [command_id for command_id, *_ in runner.pending_commands()] == [first]


# -- what one decision says is kept, in the order it was said ------------------------------------
class _Deadline(ProcessManager):
    """Keyed by the transfer's source: the first request arms a deadline; a request of
    amount 2 disarms it, empties the state and finishes; amount 3 arms and disarms at once."""

    name = "deadlines"
    event_types = (TransferRequested,)

    def process_id(self, event, message):  # type: ignore[no-untyped-def]
        return message.source

    def react(self, process: Process, event, message) -> None:  # type: ignore[no-untyped-def]
        if message.amount == 1:
            process.state["waiting"] = True
            process.schedule("deadline", timedelta(hours=1))
        elif message.amount == 2:
            process.cancel("deadline")
            process.state.clear()
            process.finish()
        elif message.amount == 3:
            process.schedule("deadline", timedelta(hours=1))
            process.cancel("deadline")


def test_a_decision_that_empties_the_state_and_finishes_is_saved(process_store):
    # It was dropped whole: the process went on reacting and its cancelled deadline fired.
    store = process_store.open()
    transport, _ = bank(store)
    runner = process_store.runner(store, _Deadline(), transport)
    with store:
        request_transfer(store, "t1", "s", "b", 1)
        runner.decide()
        assert [step for _, step, _ in runner.timeouts()] == ["deadline"]
        request_transfer(store, "t2", "s", "b", 2)
        runner.decide()
        assert runner.timeouts() == [] and runner.state("s") == {}
        request_transfer(store, "t3", "s", "b", 1)  # a finished process reacts no more
        runner.decide()
        assert runner.timeouts() == [] and runner.state("s") == {}
        assert runner.fire_timeouts(now=_micros() + 10**10) == 0


def test_a_timeout_armed_then_cancelled_in_one_decision_is_not_armed(process_store):
    store = process_store.open()
    transport, _ = bank(store)
    runner = process_store.runner(store, _Deadline(), transport)
    with store:
        request_transfer(store, "t1", "s", "b", 3)
        runner.decide()
        assert runner.timeouts() == []
        assert runner.fire_timeouts(now=_micros() + 10**10) == 0


def test_the_kit_feeds_a_finished_process_nothing_more(process_kit):  # type: ignore[no-untyped-def]
    class Refunds(_Deadline):
        def react(self, process: Process, event, message) -> None:  # type: ignore[no-untyped-def]
            if message.amount == 2:
                process.finish()
            else:
                process.send("refund", DepositCommand(account_id="s", amount=message.amount))

    requests = [
        ("x", TransferRequested(transfer_id=f"t{n}", source="s", target="b", amount=n))
        for n in (1, 2, 5)
    ]
    process_kit(Refunds).given(*requests).then_commands(DepositCommand(account_id="s", amount=1))


def test_a_process_manager_refuses_a_rebuild_saying_why(process_store):
    # A rebuild replayed the log into each process's final state: a command refused the
    # first time was sent again and could now be applied (stock reserved for a cancelled
    # order), and a fired timeout could fire again.
    import pytest

    from eventstore.core.projections import ProjectionNotRebuildableError

    store, transport, repository, runner = _setup(process_store)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        runner.drain()
        before = runner.state("t1")
        with pytest.raises(ProjectionNotRebuildableError) as caught:
            runner.projections.rebuild("process:transfers")
        assert "answers to its commands" in str(caught.value) and "catch up" in str(caught.value)
        assert runner.state("t1") == before


class _FailsOnTransfer(TransferProcess):
    """Fails to decide transfer ``bad`` until ``fixed``: a bug found in production."""

    fixed = False

    def react(self, process: Process, event, message) -> None:
        if isinstance(message, TransferRequested) and message.transfer_id == "bad":
            if not self.fixed:
                raise ValueError("no rule for this transfer")
        super().react(process, event, message)


def test_drain_raises_when_react_fails_and_goes_on_after_resume(process_store):
    import pytest

    from eventstore import ProcessManagerFailedError

    store = process_store.open()
    transport, repository = bank(store)
    manager = _FailsOnTransfer()
    runner = process_store.runner(store, manager, transport)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 10)  # decided before the failing event
        request_transfer(store, "bad", "a", "b", 20)
        request_transfer(store, "t2", "a", "b", 30)  # waits behind it
        with pytest.raises(ProcessManagerFailedError) as caught:
            runner.drain()
        # It used to return normally, with t2 never decided and one log line.
        error = caught.value
        assert error.manager == "transfers"
        assert isinstance(error.failure.error, ValueError)
        assert "no rule for this transfer" in str(error)
        assert "runner.projections.resume('process:transfers')" in str(error)
        # The command decided before the failing event was sent (t1 debited), and
        # nothing after it was decided.
        assert runner.pending_commands() == []
        assert runner.state("t2") is None
        assert balances(repository, ["a"]) == {"a": 90}
        with pytest.raises(ProcessManagerFailedError):  # still stopped: no silent skip
            runner.drain()
        manager.fixed = True
        runner.projections.resume("process:transfers")
        runner.drain()
        assert balances(repository, ["a", "b"]) == {"a": 40, "b": 60}
        assert {runner.state(t)["status"] for t in ("t1", "bad", "t2")} == {"completed"}
