"""A hand-written bank-account aggregate over the test protos."""

from __future__ import annotations

import hashlib

from eventstore import AggregateRoot, AppError, Repository, UniqueConstraint
from eventstore.core.ports import EventStore

from .protos import compiled

pb = compiled("bank")

EVENT_TYPES = [pb.AccountOpened, pb.MoneyDeposited, pb.MoneyWithdrawn, pb.AccountClosed]


class Account(AggregateRoot):
    aggregate_type = "Account"
    schema_key = hashlib.sha256(pb.AccountState.DESCRIPTOR.file.serialized_pb).hexdigest()[:16]

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.state = pb.AccountState(account_id=aggregate_id)

    # commands
    def open(self, owner: str, initial: int = 0, *, unique_owner: bool = False) -> None:
        if self.version:
            raise AppError("ALREADY_OPEN", f"account {self.id} is already open")
        constraints = [UniqueConstraint("account_owner", owner)] if unique_owner else []
        self.apply_change(pb.AccountOpened(owner=owner, initial_balance=initial), constraints=constraints)

    def deposit(self, amount: int) -> None:
        self.apply_change(pb.MoneyDeposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        if amount > self.state.balance:
            raise AppError("INSUFFICIENT_FUNDS", f"balance {self.state.balance} < {amount}")
        self.apply_change(pb.MoneyWithdrawn(amount=amount))

    # state changes
    def apply_event(self, event) -> None:  # type: ignore[no-untyped-def]
        s = self.state
        name = type(event).__name__
        if name == "AccountOpened":
            s.owner = event.owner
            s.balance = event.initial_balance
        elif name == "MoneyDeposited":
            s.balance += event.amount
        elif name == "MoneyWithdrawn":
            s.balance -= event.amount
        elif name == "AccountClosed":
            s.closed = True
        s.history.append(name)

    def snapshot_state(self) -> bytes:
        return self.state.SerializeToString()

    def restore_snapshot(self, data: bytes) -> None:
        self.state = pb.AccountState.FromString(data)


def account_repository(store: EventStore, **kwargs) -> Repository[Account]:  # type: ignore[no-untyped-def]
    return Repository(store, Account, event_types=EVENT_TYPES, **kwargs)
