"""The bank account end to end on SQLite: generated client -> InProcessTransport ->
generated server -> handlers written against the generated Protocols -> repository.

Uses the runnable example in examples/bankaccount (its generated code is
checked in; a test here proves it is up to date).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bankaccount"
sys.path.insert(0, str(EXAMPLE / "generated"))

from account_es import (  # noqa: E402
    SDK,
    AccountCommandServiceServer,
    AccountQueryServiceServer,
    AccountRepository,
    BalanceResponse,
    DepositCommand,
    GetAccountQuery,
    MoneyDepositedEvent,
    OpenAccountCommand,
    WithdrawCommand,
)

from eventstore import AppError, EveryNEvents  # noqa: E402
from eventstore.core.transport import InProcessTransport, RequestContext  # noqa: E402
from eventstore.sqlite import SQLiteEventStore  # noqa: E402
from examples.bankaccount.handlers import (  # noqa: E402
    AccountApplier,
    AccountCommands,
    AccountQueries,
)


class Bank:
    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store
        self.repository = AccountRepository(store, AccountApplier(), EveryNEvents(3))
        self.transport = InProcessTransport(
            AccountCommandServiceServer(AccountCommands(self.repository)),
            AccountQueryServiceServer(AccountQueries(self.repository)),
        )
        self.sdk = SDK(self.transport)

    def call(self, coro: Any) -> Any:
        return asyncio.run(coro)

    def open(self, account: str = "acc-1", amount: int = 100) -> Any:
        return self.call(
            self.sdk.account.open_account(
                OpenAccountCommand(account_id=account, owner="Ann", initial_deposit=amount)
            )
        )


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[Bank]:
    with SQLiteEventStore(tmp_path / "bank.db") as store:
        yield Bank(store)


def test_open_deposit_withdraw_store_three_events(bank: Bank) -> None:
    bank.open()
    bank.call(bank.sdk.account.deposit(DepositCommand(account_id="acc-1", amount=50)))
    reply = bank.call(bank.sdk.account.withdraw(WithdrawCommand(account_id="acc-1", amount=30)))
    assert (reply.balance, reply.version) == (120, 3)
    assert [e.event_type for e in bank.store.load_stream("acc-1")] == [
        "account.v1.AccountOpenedEvent",
        "account.v1.MoneyDepositedEvent",
        "account.v1.MoneyWithdrawnEvent",
    ]


def test_withdrawing_too_much_is_an_insufficient_funds_app_error_and_stores_nothing(
    bank: Bank,
) -> None:
    bank.open(amount=10)
    with pytest.raises(AppError) as caught:
        bank.call(bank.sdk.account.withdraw(WithdrawCommand(account_id="acc-1", amount=11)))
    assert caught.value.code == "INSUFFICIENT_FUNDS"
    assert caught.value.details == {"balance": "10", "requested": "11"}
    assert bank.store.stream_version("acc-1") == 1


def test_same_command_id_twice_is_applied_once_with_the_same_reply(bank: Bank) -> None:
    bank.open()
    cmd = DepositCommand(account_id="acc-1", amount=25)
    first = bank.call(bank.sdk.account.deposit(cmd, command_id="dep-1"))
    again = bank.call(bank.sdk.account.deposit(cmd, command_id="dep-1"))
    assert (first.balance, first.version) == (again.balance, again.version) == (125, 2)
    assert bank.store.stream_version("acc-1") == 2


def test_generated_repository_reloads_the_aggregate_after_an_already_processed_save(
    bank: Bank,
) -> None:
    bank.open(amount=0)
    account = bank.repository.load("acc-1")
    account.apply_change(MoneyDepositedEvent(amount=50))
    bank.repository.save_with_command(account, "cell-1")
    account.apply_change(MoneyDepositedEvent(amount=50))  # the cell, run again
    assert bank.repository.save_with_command(account, "cell-1").already_processed is True
    assert (account.balance, account.version, account.uncommitted_events) == (50, 2, ())
    account.apply_change(MoneyDepositedEvent(amount=1))
    bank.repository.save_with_command(account, "cell-2")
    assert bank.repository.load("acc-1").balance == 51


def test_event_metadata_records_the_command_id_as_causation(bank: Bank) -> None:
    bank.call(
        bank.sdk.account.open_account(
            OpenAccountCommand(account_id="acc-2", owner="Bo"),
            command_id="open-2",
            metadata={"principal_id": "teller-7"},
        )
    )
    (event,) = bank.store.load_stream("acc-2")
    assert (event.metadata.causation_id, event.metadata.principal_id) == ("open-2", "teller-7")


def test_reload_snapshot_and_time_travel(bank: Bank) -> None:
    bank.open(amount=100)
    for amount in (10, 20, 30):
        bank.call(bank.sdk.account.deposit(DepositCommand(account_id="acc-1", amount=amount)))
    fresh = AccountRepository(bank.store, AccountApplier()).load("acc-1")
    assert (fresh.balance, fresh.version, fresh.snapshot_version) == (160, 4, 3)
    assert [s.version for s in bank.store.list_snapshots("acc-1")] == [3]
    assert bank.repository.load("acc-1", at_version=2).balance == 110
    view = bank.call(bank.sdk.account.get_account(GetAccountQuery(account_id="acc-1")))
    assert (view.owner, view.balance, view.version) == ("Ann", 160, 4)


def test_opening_an_existing_account_is_refused(bank: Bank) -> None:
    bank.open()
    with pytest.raises(AppError) as caught:
        bank.open()
    assert caught.value.code == "ACCOUNT_EXISTS"


class CarelessCommands(AccountCommands):
    """Handlers that let the repository's errors escape instead of wrapping them."""

    def deposit(self, cmd: DepositCommand, ctx: RequestContext) -> BalanceResponse:
        agg = self.repository.load(cmd.account_id)
        # Someone else changes the account between this handler's load and save.
        other = self.repository.load(cmd.account_id)
        other.apply_change(MoneyDepositedEvent(amount=1))
        self.repository.save(other)
        agg.apply_change(MoneyDepositedEvent(amount=cmd.amount))
        self.repository.save(agg)
        return BalanceResponse(balance=agg.balance, version=agg.version)

    def withdraw(self, cmd: WithdrawCommand, ctx: RequestContext) -> BalanceResponse:
        agg = self.repository.load(cmd.account_id)
        return BalanceResponse(balance=agg.balance, version=agg.version)


@pytest.fixture
def careless(tmp_path: Path) -> Iterator[Bank]:
    with SQLiteEventStore(tmp_path / "bank.db") as store:
        bank = Bank(store)
        bank.transport = InProcessTransport(
            AccountCommandServiceServer(CarelessCommands(bank.repository))
        )
        bank.sdk = SDK(bank.transport)
        yield bank


def test_a_missing_account_loaded_by_a_handler_reaches_the_caller_as_not_found(
    careless: Bank,
) -> None:
    with pytest.raises(AppError) as caught:
        careless.call(careless.sdk.account.withdraw(WithdrawCommand(account_id="acc-9")))
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.details["aggregate_id"] == "acc-9"
    assert "'acc-9' has no events in the store" in caught.value.message


def test_a_missing_account_is_not_found_in_a_given_when_then_scenario(command_kit: Any) -> None:
    """The same rule without a transport: the kit names a framework error by its table code."""
    kit = command_kit(
        lambda store: AccountRepository(store, AccountApplier()),
        lambda repository: CarelessCommands(repository),
    )
    kit.given(aggregate_id="acc-9").when(WithdrawCommand(account_id="acc-9")).then_error(
        "NOT_FOUND"
    )


def test_a_lost_race_in_a_handler_reaches_the_caller_as_a_concurrency_conflict(
    careless: Bank,
) -> None:
    careless.open()
    with pytest.raises(AppError) as caught:
        careless.call(careless.sdk.account.deposit(DepositCommand(account_id="acc-1", amount=5)))
    assert caught.value.code == "CONCURRENCY_CONFLICT"
    details = dict(caught.value.details)
    assert details.pop("command_id")  # the id the SDK made: the caller resends with it
    assert details == {"aggregate_id": "acc-1", "expected": "1", "actual": "2"}


def test_example_script_tells_the_story(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.bankaccount", "--db", str(tmp_path / "b.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "refused: INSUFFICIENT_FUNDS" in out
    assert "retry: balance 175 v3; events stored: 3" in out
    assert "at version 2 the balance was 150 cents" in out


def test_example_script_runs_as_a_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE / "main.py"), "--db", str(tmp_path / "b.db")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Time travel" in result.stdout


def test_checked_in_generated_code_is_up_to_date(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventstore.cli",
            "generate",
            str(ROOT / "proto/examples/bank"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name in ("account_es.py", "account_pb2.py", "account_pb2.pyi"):
        assert (tmp_path / name).read_text() == (EXAMPLE / "generated" / name).read_text(), (
            f"examples/bankaccount/generated/{name} is stale: run eventstore generate "
            "proto/examples/bank --out examples/bankaccount/generated"
        )


def test_example_handlers_satisfy_the_generated_protocols_under_mypy() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--explicit-package-bases",
            "--no-incremental",
            "examples/bankaccount/handlers.py",
            "examples/bankaccount/main.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MYPYPATH": str(EXAMPLE / "generated")},
    )
    assert result.returncode == 0, result.stdout


def test_example_script_tells_the_same_story_on_postgresql() -> None:
    from tests.support import postgres

    dsn = postgres.server_dsn()
    url = dsn + ("&" if "?" in dsn else "?") + f"schema={postgres.fresh_schema()}"
    result = subprocess.run(
        [sys.executable, "-m", "examples.bankaccount", "--db", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "retry: balance 175 v3; events stored: 3" in result.stdout
    assert "at version 2 the balance was 150 cents" in result.stdout
