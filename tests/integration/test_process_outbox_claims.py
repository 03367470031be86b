"""Runners claim an outbox command before sending it: one runner at a time sends it, and the
process sees the answer of the last send only (once per store: SQLite file, PostgreSQL schema).

Two runners are two store objects on one file or schema, as two processes would have. The
debit of transfer ``t1`` (30 from ``a``, which holds 10) is refused, then a deposit lands:
a second send of the same command id would now be applied. Before claims, the second runner
sent it while the first was filing the refusal, and the refusal won: ``rejected`` failed a
transfer whose money had left ``a``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eventstore.core.responses import Response, transport_timeout
from tests.support.process_stores import ProcessStore
from tests.support.transfers import (
    DepositCommand,
    TransferProcess,
    balances,
    bank,
    open_accounts,
    request_transfer,
)

ROOT = Path(__file__).resolve().parents[2]
DEPOSIT = "account.v1.AccountCommandService.Deposit"


class Wire:
    """The in-process service behind a hook: ``sent`` lists the command ids requested, and
    ``after(command_id, response)`` runs once, when the service answered the first request,
    before the runner hears (it may answer instead)."""

    def __init__(self, inner: Any, after: Any = None) -> None:
        self.inner = inner
        self.after = after
        self.sent: list[str] = []

    async def request(self, subject, message, headers=None, principal=None):  # type: ignore[no-untyped-def]
        command_id = (headers or {}).get("Es-Command-Id", "")
        self.sent.append(command_id)
        response = await self.inner.request(subject, message, headers, principal=principal)
        after, self.after = self.after, None
        if after is not None:
            response = await after(command_id, response) or response
        return response


def _routes(transport: Any) -> list[Any]:
    return [transport.router.route(subject) for subject in transport.router.subjects]


def _runner(process_store: ProcessStore, store: Any, wire: Wire, **options: Any) -> Any:
    return process_store.runner(
        store, TransferProcess(), wire, routes=_routes(wire.inner), **options
    )


async def _deposit(transport: Any, account: str, amount: int) -> None:
    response = await transport.request(DEPOSIT, DepositCommand(account_id=account, amount=amount))
    assert response.success, response.error


def _withdrawals(store: Any, command_id: str) -> int:
    return sum(
        1
        for e in store.read_all()
        if e.event_type.endswith("MoneyWithdrawnEvent") and e.metadata.causation_id == command_id
    )


def test_a_second_runner_cannot_send_a_command_the_first_is_sending(
    process_store: ProcessStore,
) -> None:
    with process_store.open() as store_a, process_store.open() as store_b:
        inner_a, repository = bank(store_a)
        inner_b, _ = bank(store_b)
        open_accounts(inner_a, {"a": 10, "b": 0})
        request_transfer(store_a, "t1", "a", "b", 30)
        wire_b = Wire(inner_b)
        runner_b = _runner(process_store, store_b, wire_b)
        seen_by_b: list[int] = []

        async def meanwhile(command_id: str, response: Response) -> None:
            assert response.error.code == "INSUFFICIENT_FUNDS"
            await _deposit(inner_a, "a", 50)  # the same id sent now would be applied
            seen_by_b.append(await runner_b.send_pending())

        runner_a = _runner(process_store, store_a, Wire(inner_a, meanwhile))
        runner_a.decide()
        [(debit_id, *_)] = runner_a.pending_commands()
        assert asyncio.run(runner_a.send_pending()) == 1
        assert seen_by_b == [0] and wire_b.sent == []  # claimed by A: B sent nothing
        assert asyncio.run(runner_b.send_pending()) == 0  # answered by A: nothing left
        assert wire_b.sent == []
        runner_a.drain()
        state = runner_a.state("t1")
        assert state["status"] == "failed" and state["errors"] == ["debit: INSUFFICIENT_FUNDS"]
        assert _withdrawals(store_a, debit_id) == 0  # refused, and refused only
        assert balances(repository, ["a", "b"]) == {"a": 60, "b": 0}
        assert runner_a.pending_commands() == []


def test_an_answer_after_its_claim_ran_out_and_another_runner_claimed_it_is_dropped(
    process_store: ProcessStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A's send outlives its lease: B claims and sends the same command, which is applied
    now. A's refusal is filed first, but B's send came later and its answer is the one that
    counts: the transfer completes and nothing compensates it."""
    lease = 0.2
    with process_store.open() as store_a, process_store.open() as store_b:
        inner_a, repository = bank(store_a)
        inner_b, _ = bank(store_b)
        open_accounts(inner_a, {"a": 10, "b": 0})
        request_transfer(store_a, "t1", "a", "b", 30)
        a_filed = asyncio.Event()

        async def hold_until_a_filed(command_id: str, response: Response) -> None:
            assert response.success  # applied
            await a_filed.wait()

        runner_b = _runner(process_store, store_b, Wire(inner_b, hold_until_a_filed))
        b_sending: list[asyncio.Task[int]] = []

        async def slow(command_id: str, response: Response) -> None:
            assert response.error.code == "INSUFFICIENT_FUNDS"
            await asyncio.sleep(lease + 0.3)  # A's claim runs out meanwhile
            await _deposit(inner_a, "a", 50)
            b_sending.append(asyncio.create_task(runner_b.send_pending()))
            for _ in range(500):  # until B's request was answered (applied)
                if _withdrawals(store_a, command_id):
                    break
                await asyncio.sleep(0.01)

        runner_a = _runner(process_store, store_a, Wire(inner_a, slow), claim_lease=lease)
        runner_a.decide()
        [(debit_id, *_)] = runner_a.pending_commands()

        async def scenario() -> int:
            with caplog.at_level(logging.WARNING, logger="eventstore.process"):
                await runner_a.send_pending()
            a_filed.set()
            return await b_sending[0]

        assert asyncio.run(scenario()) == 1
        assert f"the answer to command {debit_id}" in caplog.text and "dropped" in caplog.text
        runner_a.drain()
        state = runner_a.state("t1")
        assert state["status"] == "completed" and "errors" not in state
        assert _withdrawals(store_a, debit_id) == 1
        assert balances(repository, ["a", "b"]) == {"a": 30, "b": 30}
        assert runner_a.pending_commands() == []


def test_a_command_whose_answer_timed_out_keeps_its_claim_until_the_lease_ends(
    process_store: ProcessStore,
) -> None:
    """TIMEOUT means it may have been applied, and may still be: nobody sends it again
    before the claim ends; then it is sent once more under its id and applied once."""
    lease = 0.5
    with process_store.open() as store_a, process_store.open() as store_b:
        inner_a, repository = bank(store_a)
        inner_b, _ = bank(store_b)
        open_accounts(inner_a, {"a": 100, "b": 0})
        request_transfer(store_a, "t1", "a", "b", 30)

        async def lose_the_reply(command_id: str, response: Response) -> Response:
            return Response.failure(transport_timeout("account", command_id, 0.1))

        wire_a, wire_b = Wire(inner_a, lose_the_reply), Wire(inner_b)
        runner_a = _runner(process_store, store_a, wire_a, claim_lease=lease)
        runner_b = _runner(process_store, store_b, wire_b, claim_lease=lease)
        runner_a.decide()
        [(debit_id, *_)] = runner_a.pending_commands()
        claimed_at = time.monotonic()
        assert asyncio.run(runner_a.send_pending()) == 0  # TIMEOUT: not answered
        assert asyncio.run(runner_b.send_pending()) == 0
        assert asyncio.run(runner_a.send_pending()) == 0
        assert time.monotonic() - claimed_at < lease  # all within the claim
        assert wire_a.sent == [debit_id] and wire_b.sent == []
        time.sleep(lease)
        assert asyncio.run(runner_b.send_pending()) == 1  # "already processed": its answer
        assert wire_b.sent == [debit_id]
        runner_b.drain()
        assert runner_b.state("t1")["status"] == "completed"
        assert _withdrawals(store_a, debit_id) == 1
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}


SENDER = textwrap.dedent(
    """
    import asyncio, sys
    from tests.support.process_stores import open_from_argv
    from tests.support.transfers import TransferProcess, bank

    store, ProcessRunner = open_from_argv(sys.argv[1:-1])
    inner, _ = bank(store)

    class Hangs:  # the service answers; the runner dies before filing the answer
        async def request(self, subject, message, headers=None, principal=None):
            await inner.request(subject, message, headers, principal=principal)
            print("answered", flush=True)
            await asyncio.sleep(3600)

    routes = [inner.router.route(s) for s in inner.router.subjects]
    runner = ProcessRunner(
        store, TransferProcess(), Hangs(), routes=routes, claim_lease=float(sys.argv[-1])
    )
    asyncio.run(runner.send_pending())
    """
)


@pytest.mark.slow
def test_a_command_whose_runner_died_while_sending_is_sent_again_once_its_claim_ends(
    process_store: ProcessStore,
) -> None:
    lease = 2.0
    with process_store.open() as store:
        inner, repository = bank(store)
        open_accounts(inner, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        wire = Wire(inner)
        runner = _runner(process_store, store, wire, claim_lease=lease)
        runner.decide()
        [(debit_id, *_)] = runner.pending_commands()
        proc = subprocess.Popen(
            [sys.executable, "-c", SENDER, *process_store.argv, str(lease)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"answered"
            answered_at = time.monotonic()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert asyncio.run(runner.send_pending()) == 0  # the dead runner's claim holds
        assert wire.sent == [] and time.monotonic() - answered_at < lease
        assert [c[0] for c in runner.pending_commands()] == [debit_id]
        time.sleep(lease)
        runner.drain()
        assert wire.sent.count(debit_id) == 1  # sent again once, "already processed"
        assert runner.state("t1")["status"] == "completed"
        assert _withdrawals(store, debit_id) == 1
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}
        applied = Counter(
            e.metadata.causation_id for e in store.read_all() if e.aggregate_type == "Account"
        )
        assert set(applied.values()) == {1}


def test_an_outbox_from_before_claims_gains_the_column_and_is_sent(
    process_store: ProcessStore,
) -> None:
    with process_store.open() as store:
        inner, repository = bank(store)
        open_accounts(inner, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        process_store.runner(store, TransferProcess(), inner).decide()
        # The outbox as the runners wrote it before claims: no claimed_until column.
        process_store.execute(store, "ALTER TABLE process_outbox DROP COLUMN claimed_until")
        runner = process_store.runner(store, TransferProcess(), inner)
        runner.drain()
        assert runner.state("t1")["status"] == "completed"
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}


class _TimedWire(Wire):
    timeout = 5.0


@pytest.mark.parametrize("lease", [0, -1.0, float("inf"), float("nan")])
def test_a_claim_lease_that_is_no_positive_time_is_refused(tmp_path: Path, lease: float) -> None:
    from eventstore.sqlite import ProcessRunner, SQLiteEventStore

    with SQLiteEventStore(tmp_path / "bank.db") as store:
        inner, _ = bank(store)
        with pytest.raises(ValueError, match="claim_lease must be a positive number of seconds"):
            ProcessRunner(store, TransferProcess(), inner, claim_lease=lease)


def test_a_claim_lease_not_longer_than_the_transports_timeout_is_refused(tmp_path: Path) -> None:
    from eventstore.sqlite import ProcessRunner, SQLiteEventStore

    with SQLiteEventStore(tmp_path / "bank.db") as store:
        inner, _ = bank(store)
        wire = _TimedWire(inner)
        with pytest.raises(ValueError, match=r"claim_lease=5 s .* request timeout \(5 s\)"):
            ProcessRunner(store, TransferProcess(), wire, routes=_routes(inner), claim_lease=5)
        runner = ProcessRunner(store, TransferProcess(), wire, routes=_routes(inner))
        assert runner.claim_lease == 30.0


def test_drain_of_a_runner_restarted_after_a_crash_waits_for_the_dead_runners_claim(
    process_store: ProcessStore,
) -> None:
    """A runner claimed the debit and died before sending it (its claim stays on the row). A
    runner started afterwards used to return from drain() at once, the debit still pending
    and nothing said; drain() now waits for the claim's end and sends it."""
    lease = 0.5
    with process_store.open() as store:
        inner, repository = bank(store)
        open_accounts(inner, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        dead = _runner(process_store, store, Wire(inner), claim_lease=lease)
        dead.decide()
        [(debit_id, *_)] = dead.pending_commands()
        with dead.tables.transaction() as conn:  # claimed, then the process died
            assert dead.tables.claim_command(conn, debit_id, int(lease * 1_000_000)) is not None
        restarted = _runner(process_store, store, Wire(inner), claim_lease=lease)
        started = time.monotonic()
        restarted.drain()
        assert time.monotonic() - started < lease + 5
        assert restarted.pending_commands() == []
        assert restarted.state("t1")["status"] == "completed"
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}


def test_a_runner_over_a_transport_with_a_long_timeout_takes_a_longer_lease(
    process_store: ProcessStore,
) -> None:
    # A 30 s default lease refused every transport whose timeout was 30 s or more.
    with process_store.open() as store:
        inner, _ = bank(store)
        wire = Wire(inner)
        wire.timeout = 60.0  # type: ignore[attr-defined]
        assert _runner(process_store, store, wire).claim_lease == 120.0
        wire.timeout = 5.0  # type: ignore[attr-defined]
        assert _runner(process_store, store, wire).claim_lease == 30.0
        with pytest.raises(ValueError, match="not longer than the transport's request timeout"):
            _runner(process_store, store, wire, claim_lease=5.0)


def test_one_runner_claims_a_page_of_commands_in_one_transaction(
    process_store: ProcessStore,
) -> None:
    # One claim transaction (on SQLite one fsync) per command cost a single runner about a
    # third of its sends per second.
    with process_store.open() as store:
        inner, repository = bank(store)
        open_accounts(inner, {"a": 1000, "b": 0})
        for n in range(40):
            request_transfer(store, f"t{n}", "a", "b", 1)
        runner = _runner(process_store, store, Wire(inner))
        runner.decide()
        pages: list[int] = []
        claim_page = runner._claim_page

        def counted(command_ids: list[str]) -> list[int | None]:
            pages.append(len(command_ids))
            return claim_page(command_ids)

        runner._claim_page = counted  # type: ignore[method-assign]
        assert asyncio.run(runner.send_pending()) == 40
        assert pages == [32, 8]
        runner.drain()
        assert balances(repository, ["a", "b"]) == {"a": 960, "b": 40}


class _Fails:
    """The in-process service behind a wire that raises (or hangs) on its first request."""

    def __init__(self, inner: Any, how: str) -> None:
        self.inner = inner
        self.how = how
        self.sent = 0

    async def request(self, subject, message, headers=None, principal=None):  # type: ignore[no-untyped-def]
        self.sent += 1
        if self.sent == 1:
            if self.how == "raise":
                raise ConnectionResetError("the connection went")
            await asyncio.sleep(60)  # cancelled by the caller's wait_for
        return await self.inner.request(subject, message, headers, principal=principal)


@pytest.mark.parametrize("how", ["raise", "cancel"])
def test_a_send_that_raised_or_was_cancelled_is_sent_again_by_the_next_drain(
    process_store: ProcessStore, how: str
) -> None:
    # Its claim stayed on the row: the same runner's next drain skipped the command for
    # the whole lease (30 s), returning as if nothing were left.
    with process_store.open() as store:
        inner, repository = bank(store)
        open_accounts(inner, {"a": 100, "b": 0})
        request_transfer(store, "t1", "a", "b", 30)
        wire = _Fails(inner, how)
        runner = process_store.runner(store, TransferProcess(), wire, routes=_routes(inner))
        if how == "raise":
            with pytest.raises(ConnectionResetError):
                runner.drain()
        else:
            with pytest.raises(TimeoutError):
                asyncio.run(asyncio.wait_for(runner.drain_async(), 0.5))
        started = time.monotonic()
        runner.drain()
        assert time.monotonic() - started < 5
        assert runner.state("t1")["status"] == "completed"
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}
