"""The Given/When/Then kit (eventstore.testing) and its pytest fixtures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.transfers import (
    AccountApplier,
    AccountCommands,
    AccountOpenedEvent,
    AccountRepository,
    DepositCommand,
    MoneyDepositedEvent,
    MoneyWithdrawnEvent,
    TransferProcess,
    TransferRequested,
    WithdrawCommand,
)


@pytest.fixture
def accounts(command_kit):
    return command_kit(
        lambda store: AccountRepository(store, AccountApplier()),
        lambda repo: AccountCommands(repo),
    )


def test_a_command_stores_the_expected_events(accounts):
    accounts.given(AccountOpenedEvent(owner="ann", initial_deposit=10), aggregate_id="a").when(
        DepositCommand(account_id="a", amount=5)
    ).then(MoneyDepositedEvent(amount=5))


def test_a_business_error_is_named_by_its_code(accounts):
    accounts.given(AccountOpenedEvent(owner="ann"), aggregate_id="a").when(
        WithdrawCommand(account_id="a", amount=5)
    ).then_error("INSUFFICIENT_FUNDS")


def test_a_framework_error_is_named_by_its_table_code(accounts):
    scenario = accounts.given(AccountOpenedEvent(owner="ann"), aggregate_id="a")
    scenario.repository.store.close()  # the server shutting down under the request
    scenario.when(DepositCommand(account_id="a", amount=5)).then_error("UNAVAILABLE")


def test_a_failing_then_shows_both_lists_in_text_format(accounts):
    scenario = accounts.given(AccountOpenedEvent(owner="ann"), aggregate_id="a").when(
        DepositCommand(account_id="a", amount=5)
    )
    with pytest.raises(AssertionError) as caught:
        scenario.then(MoneyDepositedEvent(amount=7))
    text = str(caught.value)
    assert "- account.v1.MoneyDepositedEvent { amount: 7 }" in text
    assert "+ account.v1.MoneyDepositedEvent { amount: 5 }" in text
    with pytest.raises(AssertionError, match="expected error INSUFFICIENT_FUNDS, but the command"):
        scenario.then_error("INSUFFICIENT_FUNDS")


def test_then_error_refuses_another_code(accounts):
    scenario = accounts.given(AccountOpenedEvent(owner="ann"), aggregate_id="a").when(
        WithdrawCommand(account_id="a", amount=5)
    )
    with pytest.raises(AssertionError, match="expected error ACCOUNT_CLOSED, got INSUFFICIENT"):
        scenario.then_error("ACCOUNT_CLOSED")
    with pytest.raises(AssertionError, match="the handler raised AppError"):
        scenario.then(MoneyWithdrawnEvent(amount=5))


class Totals:
    """A projection kept in memory: deposits per account."""

    name = "totals"
    event_types = ("account.v1.MoneyDepositedEvent",)

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def reset(self, ctx) -> None:
        self.totals.clear()

    def handle(self, event, ctx) -> None:
        amount = MoneyDepositedEvent.FromString(event.data).amount
        self.totals[event.aggregate_id] = self.totals.get(event.aggregate_id, 0) + amount


def test_a_projection_holds_the_expected_state(projection_kit):
    kit = projection_kit(Totals, lambda projection, model: projection.totals)
    kit.given(
        ("a", MoneyDepositedEvent(amount=5)),
        ("a", MoneyDepositedEvent(amount=2)),
        ("b", MoneyDepositedEvent(amount=1)),
    ).then_state({"a": 7, "b": 1})
    with pytest.raises(AssertionError, match="the projection holds another state"):
        kit.given(("a", MoneyDepositedEvent(amount=5))).then_state({"a": 6})


def test_a_process_manager_sends_the_expected_commands(process_kit):
    kit = process_kit(TransferProcess)
    request = TransferRequested(transfer_id="t1", source="a", target="b", amount=30)
    kit.given(("transfer-t1", request)).then_commands(WithdrawCommand(account_id="a", amount=30))
    with pytest.raises(AssertionError) as caught:
        kit.given(("transfer-t1", request)).then_commands(DepositCommand(account_id="b", amount=30))
    assert '+ account.v1.WithdrawCommand { account_id: "a" amount: 30 }' in str(caught.value)


def test_the_plugin_imports_nothing_heavy():
    code = (
        "import sys, eventstore.testing.plugin; "
        "heavy = [m for m in ('eventstore.codegen', 'IPython', 'grpc_tools', 'nbformat', "
        "'eventstore.sqlite', 'eventstore.notebook') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
