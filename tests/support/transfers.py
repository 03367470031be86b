"""Money transfers between bank accounts: the example's generated SDK and a process manager.

Used by the process-manager tests, the Given/When/Then tests and the benchmark.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import (  # noqa: E402
    AccountCommandServiceServer,
    AccountOpenedEvent,
    AccountRepository,
    DepositCommand,
    MoneyDepositedEvent,
    MoneyWithdrawnEvent,
    OpenAccountCommand,
    WithdrawCommand,
)

from eventstore import AppError, EventMetadata, NewEvent, new_event_id  # noqa: E402
from eventstore.core.process_managers import Process, ProcessManager  # noqa: E402
from eventstore.core.transport import InProcessTransport  # noqa: E402
from examples.bankaccount.handlers import AccountApplier, AccountCommands  # noqa: E402

from .protos import compiled  # noqa: E402

tpb = compiled("transfer")
TransferRequested = tpb.TransferRequested


class TransferProcess(ProcessManager):
    """Debit the source, then credit the target; refund the source when the credit is
    refused; a debit not confirmed within ``deadline`` times out (refunded if it lands)."""

    name = "transfers"
    event_types = (TransferRequested, MoneyWithdrawnEvent, MoneyDepositedEvent)
    deadline = timedelta(seconds=30)

    def react(self, process: Process, event: Any, message: Any) -> None:
        s = process.state
        if isinstance(message, TransferRequested):
            s.update(source=message.source, target=message.target, amount=message.amount)
            s["status"] = "debiting"
            process.send("debit", WithdrawCommand(account_id=message.source, amount=message.amount))
            process.schedule("deadline", self.deadline)
        elif not s:
            return  # a withdrawal or deposit of no transfer
        elif isinstance(message, MoneyWithdrawnEvent) and s["status"] == "debiting":
            s["status"] = "crediting"
            process.cancel("deadline")
            process.send("credit", DepositCommand(account_id=s["target"], amount=s["amount"]))
        elif isinstance(message, MoneyDepositedEvent) and s["status"] == "crediting":
            s["status"] = "completed"
            process.finish()
        elif isinstance(message, MoneyWithdrawnEvent) and s["status"] == "timed out":
            # The debit came after the deadline: give the money back.
            s["status"] = "refunding"
            process.send("refund", DepositCommand(account_id=s["source"], amount=s["amount"]))
        elif isinstance(message, MoneyDepositedEvent) and s["status"] == "refunding":
            s["status"] = "compensated"
            process.finish()

    def rejected(self, process: Process, step: str, error: AppError) -> None:
        s = process.state
        s.setdefault("errors", []).append(f"{step}: {error.code}")
        if step == "debit":
            s["status"] = "failed" if s["status"] == "debiting" else s["status"] + ", failed"
            process.cancel("deadline")
            process.finish()
        elif step == "credit":
            s["status"] = "refunding"
            process.send("refund", DepositCommand(account_id=s["source"], amount=s["amount"]))

    def timed_out(self, process: Process, step: str) -> None:
        # Not finished: a debit that still lands is refunded (see react).
        if step == "deadline" and process.state.get("status") == "debiting":
            process.state["status"] = "timed out"


def bank(store: Any) -> tuple[InProcessTransport, AccountRepository]:
    """The account service over an in-process transport, on ``store``."""
    repository = AccountRepository(store, AccountApplier())
    transport = InProcessTransport(AccountCommandServiceServer(AccountCommands(repository)))
    return transport, repository


def open_accounts(transport: InProcessTransport, balances: dict[str, int]) -> None:
    import asyncio

    async def go() -> None:
        for account, balance in balances.items():
            cmd = OpenAccountCommand(account_id=account, owner=account, initial_deposit=balance)
            response = await transport.request("account.v1.AccountCommandService.OpenAccount", cmd)
            if not response.success:
                raise response.error  # type: ignore[misc]

    asyncio.run(go())


def request_transfer(store: Any, transfer_id: str, source: str, target: str, amount: int) -> None:
    """Store the trigger: a TransferRequested on the transfer's own stream."""
    message = TransferRequested(
        transfer_id=transfer_id, source=source, target=target, amount=amount
    )
    store.append(
        f"transfer-{transfer_id}",
        "Transfer",
        0,
        [
            NewEvent(
                new_event_id(),
                message.DESCRIPTOR.full_name,
                message.SerializeToString(),
                EventMetadata(correlation_id=transfer_id),
            )
        ],
    )


def balances(repository: AccountRepository, accounts: list[str]) -> dict[str, int]:
    return {a: repository.load(a).balance for a in accounts}


__all__ = [
    "AccountApplier",
    "AccountCommandServiceServer",
    "AccountCommands",
    "AccountOpenedEvent",
    "AccountRepository",
    "DepositCommand",
    "MoneyDepositedEvent",
    "MoneyWithdrawnEvent",
    "OpenAccountCommand",
    "TransferProcess",
    "TransferRequested",
    "WithdrawCommand",
    "balances",
    "bank",
    "open_accounts",
    "request_transfer",
]
