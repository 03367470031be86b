"""The bank's behaviour as Given/When/Then scenarios (``eventstore.testing``).

Each scenario runs the example's own handlers (``handlers.py``) on a fresh
in-memory store: given the events an account already has, when a command
arrives, then these events are stored, or this error is answered. Run them
with the suite (``pytest`` collects ``examples/``) or alone:
``pytest examples/bankaccount``. The fixtures ``command_kit`` and
``projection_kit`` come from the pytest plugin installed with eventstore.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "generated"))
if str(HERE.parent.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent.parent))

from account_es import (  # noqa: E402
    AccountClosedEvent,
    AccountOpenedEvent,
    AccountProjectionBuilder,
    AccountRepository,
    CloseAccountCommand,
    DepositCommand,
    MoneyDepositedEvent,
    MoneyWithdrawnEvent,
    OpenAccountCommand,
    WithdrawCommand,
)

from eventstore.core.events import Event  # noqa: E402
from eventstore.core.projection import ProjectionContext  # noqa: E402
from examples.bankaccount.handlers import AccountApplier, AccountCommands  # noqa: E402

ANN = AccountOpenedEvent(owner="Ann", initial_deposit=100)


@pytest.fixture
def accounts(command_kit: Any) -> Any:
    """The account command handler, on a repository of the generated AccountRepository."""
    return command_kit(
        lambda store: AccountRepository(store, AccountApplier()),
        lambda repository: AccountCommands(repository),
    )


def test_opening_an_account_stores_its_opening(accounts: Any) -> None:
    accounts.given(aggregate_id="acc-1").when(
        OpenAccountCommand(account_id="acc-1", owner="Ann", initial_deposit=100)
    ).then(ANN)


def test_an_account_id_is_opened_once(accounts: Any) -> None:
    accounts.given(ANN, aggregate_id="acc-1").when(
        OpenAccountCommand(account_id="acc-1", owner="Bob")
    ).then_error("ACCOUNT_EXISTS")


def test_a_deposit_is_stored(accounts: Any) -> None:
    accounts.given(ANN, aggregate_id="acc-1").when(
        DepositCommand(account_id="acc-1", amount=25)
    ).then(MoneyDepositedEvent(amount=25))


def test_a_withdrawal_within_the_balance_is_stored(accounts: Any) -> None:
    accounts.given(ANN, MoneyDepositedEvent(amount=25), aggregate_id="acc-1").when(
        WithdrawCommand(account_id="acc-1", amount=125)
    ).then(MoneyWithdrawnEvent(amount=125))


def test_a_withdrawal_beyond_the_balance_is_refused(accounts: Any) -> None:
    accounts.given(ANN, MoneyWithdrawnEvent(amount=60), aggregate_id="acc-1").when(
        WithdrawCommand(account_id="acc-1", amount=50)
    ).then_error("INSUFFICIENT_FUNDS")


def test_a_closed_account_takes_no_deposit(accounts: Any) -> None:
    accounts.given(ANN, AccountClosedEvent(), aggregate_id="acc-1").when(
        DepositCommand(account_id="acc-1", amount=5)
    ).then_error("ACCOUNT_CLOSED")


def test_an_account_that_was_never_opened_cannot_be_closed(accounts: Any) -> None:
    accounts.given(aggregate_id="acc-9").when(CloseAccountCommand(account_id="acc-9")).then_error(
        "ACCOUNT_NOT_FOUND"
    )


class Balances:
    """A read model of every account's balance, built with the generated builder."""

    name = "balances"

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        builder = AccountProjectionBuilder(self.name)
        builder.on_account_opened(lambda e, env: self._add(env, e.initial_deposit))
        builder.on_money_deposited(lambda e, env: self._add(env, e.amount))
        builder.on_money_withdrawn(lambda e, env: self._add(env, -e.amount))
        builder.on_reset(lambda ctx: self.balances.clear())
        self._built = builder.build()
        self.event_types = self._built.event_types

    def _add(self, envelope: Event, amount: int) -> None:
        account = envelope.aggregate_id
        self.balances[account] = self.balances.get(account, 0) + amount

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        self._built.handle(event, ctx)

    def reset(self, ctx: ProjectionContext) -> None:
        self._built.reset(ctx)


def test_the_balances_follow_every_account(projection_kit: Any) -> None:
    kit = projection_kit(Balances, lambda projection, model: projection.balances)
    kit.given(
        ("acc-1", ANN),
        ("acc-2", AccountOpenedEvent(owner="Bob", initial_deposit=5)),
        ("acc-1", MoneyWithdrawnEvent(amount=30)),
        ("acc-2", MoneyDepositedEvent(amount=10)),
    ).then_state({"acc-1": 70, "acc-2": 15})
