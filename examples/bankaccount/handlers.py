"""The bank's behaviour, written against the generated Protocols.

``AccountApplier`` changes state for each event (``AccountEventApplier``);
``AccountCommands`` and ``AccountQueries`` serve the generated services
(``AccountCommandServiceHandler``, ``AccountQueryServiceHandler``). Each
command passes ``ctx.command_id`` to the repository, so a client that sends
the same command id twice has it applied once.
"""

from __future__ import annotations

from collections.abc import Callable

from account_es import (
    AccountAggregate,
    AccountClosedEvent,
    AccountCommandServiceHandler,
    AccountEventApplier,
    AccountOpenedEvent,
    AccountQueryServiceHandler,
    AccountRepository,
    AccountStatus,
    AccountView,
    BalanceResponse,
    CloseAccountCommand,
    CloseAccountResponse,
    DepositCommand,
    GetAccountQuery,
    MoneyDepositedEvent,
    MoneyWithdrawnEvent,
    OpenAccountCommand,
    OpenAccountResponse,
    WithdrawCommand,
)

from eventstore import AggregateNotFoundError, AppError, CommandResult
from eventstore.core.transport import RequestContext

OPEN = AccountStatus.ACCOUNT_STATUS_OPEN
CLOSED = AccountStatus.ACCOUNT_STATUS_CLOSED


class AccountApplier:
    """State changes: the only place an Account's state is written."""

    def apply_account_opened_event(self, agg: AccountAggregate, event: AccountOpenedEvent) -> None:
        agg.owner = event.owner
        agg.balance = event.initial_deposit
        agg.status = OPEN

    def apply_money_deposited_event(
        self, agg: AccountAggregate, event: MoneyDepositedEvent
    ) -> None:
        agg.balance += event.amount

    def apply_money_withdrawn_event(
        self, agg: AccountAggregate, event: MoneyWithdrawnEvent
    ) -> None:
        agg.balance -= event.amount

    def apply_account_closed_event(self, agg: AccountAggregate, event: AccountClosedEvent) -> None:
        agg.status = CLOSED


class AccountCommands:
    """Decisions: check the command against the state, then raise events."""

    def __init__(self, repository: AccountRepository) -> None:
        self.repository = repository

    def open_account(self, cmd: OpenAccountCommand, ctx: RequestContext) -> OpenAccountResponse:
        def open_(agg: AccountAggregate) -> None:
            if agg.version:
                raise AppError(
                    "ACCOUNT_EXISTS",
                    f"account {agg.id!r} already exists",
                    "Choose another account id.",
                    {"account_id": agg.id},
                )
            if cmd.initial_deposit < 0:
                raise AppError("INVALID_AMOUNT", "the initial deposit cannot be negative")
            agg.apply_change(
                AccountOpenedEvent(owner=cmd.owner, initial_deposit=cmd.initial_deposit)
            )

        result = self._run(cmd.account_id, open_, ctx)
        return OpenAccountResponse(account_id=cmd.account_id, version=result.version)

    def deposit(self, cmd: DepositCommand, ctx: RequestContext) -> BalanceResponse:
        def deposit_(agg: AccountAggregate) -> None:
            self._check_open(agg)
            if cmd.amount <= 0:
                raise AppError("INVALID_AMOUNT", f"cannot deposit {cmd.amount} cents")
            agg.apply_change(MoneyDepositedEvent(amount=cmd.amount))

        return self._balance(cmd.account_id, self._run(cmd.account_id, deposit_, ctx))

    def withdraw(self, cmd: WithdrawCommand, ctx: RequestContext) -> BalanceResponse:
        def withdraw_(agg: AccountAggregate) -> None:
            self._check_open(agg)
            if cmd.amount > agg.balance:
                raise AppError(
                    "INSUFFICIENT_FUNDS",
                    f"account {agg.id!r} holds {agg.balance} cents, cannot withdraw {cmd.amount}",
                    "Withdraw less, or deposit first.",
                    {"balance": str(agg.balance), "requested": str(cmd.amount)},
                )
            agg.apply_change(MoneyWithdrawnEvent(amount=cmd.amount))

        return self._balance(cmd.account_id, self._run(cmd.account_id, withdraw_, ctx))

    def close_account(self, cmd: CloseAccountCommand, ctx: RequestContext) -> CloseAccountResponse:
        def close_(agg: AccountAggregate) -> None:
            self._check_open(agg)
            agg.apply_change(AccountClosedEvent())

        return CloseAccountResponse(version=self._run(cmd.account_id, close_, ctx).version)

    # -- helpers -----------------------------------------------------------------
    def _run(
        self, account_id: str, decide: Callable[[AccountAggregate], None], ctx: RequestContext
    ) -> CommandResult:
        # Load, decide, save under the client's command id; a repeated id
        # returns the first result without deciding again.
        return self.repository.retry_on_conflict(
            account_id, decide, command_id=ctx.command_id, metadata=ctx.metadata
        )

    def _balance(self, account_id: str, result: CommandResult) -> BalanceResponse:
        # The balance as of this command's version: the same answer on a retry.
        agg = self.repository.load(account_id, at_version=result.version)
        return BalanceResponse(balance=agg.balance, version=agg.version)

    @staticmethod
    def _check_open(agg: AccountAggregate) -> None:
        if agg.version == 0:
            raise AppError(
                "ACCOUNT_NOT_FOUND", f"account {agg.id!r} does not exist", "Open it first."
            )
        if agg.status == CLOSED:
            raise AppError("ACCOUNT_CLOSED", f"account {agg.id!r} is closed")


class AccountQueries:
    def __init__(self, repository: AccountRepository) -> None:
        self.repository = repository

    def get_account(self, query: GetAccountQuery, ctx: RequestContext) -> AccountView:
        try:
            agg = self.repository.load(query.account_id)
        except AggregateNotFoundError:
            raise AppError(
                "ACCOUNT_NOT_FOUND", f"account {query.account_id!r} does not exist"
            ) from None
        return AccountView(
            account_id=agg.account_id,
            owner=agg.owner,
            balance=agg.balance,
            status=agg.status,
            version=agg.version,
        )


def _satisfies_the_generated_protocols(repository: AccountRepository) -> None:
    # Never called: mypy checks these assignments.
    applier: AccountEventApplier = AccountApplier()
    commands: AccountCommandServiceHandler = AccountCommands(repository)
    queries: AccountQueryServiceHandler = AccountQueries(repository)
    del applier, commands, queries
