"""Generated projection builders: chainable registrations that build a Projection."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from eventstore import Event, NewEvent, Projection, ProjectionContext, new_event_id
from eventstore.codegen import generate_module
from eventstore.sqlite import SQLiteEventStore

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def bank() -> ModuleType:
    return generate_module(paths=[EXAMPLES / "bank" / "account.proto"], name="bank")


def stored(bank: ModuleType, message: Any, position: int = 1) -> Event:
    return Event(
        new_event_id(),
        "acc-1",
        "Account",
        message.DESCRIPTOR.full_name,
        position,
        position,
        0,
        message.SerializeToString(),
    )


def test_handlers_chain_and_receive_the_decoded_event_and_envelope(bank: ModuleType) -> None:
    seen: list[tuple[str, object]] = []
    projection = (
        bank.AccountProjectionBuilder("balances")
        .on_account_opened(lambda e, env: seen.append((e.owner, env.aggregate_id)))
        .on_money_deposited(lambda e, env: seen.append(("deposit", e.amount)))
        .build()
    )
    ctx = ProjectionContext("balances")
    projection.handle(stored(bank, bank.AccountOpenedEvent(owner="ann")), ctx)
    projection.handle(stored(bank, bank.MoneyDepositedEvent(amount=5), 2), ctx)
    assert seen == [("ann", "acc-1"), ("deposit", 5)]


def test_builder_methods_work_as_decorators(bank: ModuleType) -> None:
    totals: dict[str, int] = {}
    builder = bank.AccountProjectionBuilder("totals")

    @builder.on_money_withdrawn
    def _(event: Any, envelope: Event) -> None:
        totals[envelope.aggregate_id] = totals.get(envelope.aggregate_id, 0) + event.amount

    builder.build().handle(
        stored(bank, bank.MoneyWithdrawnEvent(amount=3)), ProjectionContext("totals")
    )
    assert totals == {"acc-1": 3}


def test_built_projection_satisfies_the_projection_port(bank: ModuleType) -> None:
    projection = bank.AccountProjectionBuilder("p").on_account_closed(lambda e, env: None).build()
    assert isinstance(projection, Projection)
    assert projection.name == "p"
    assert projection.event_types == ("account.v1.AccountClosedEvent",)


def test_events_without_a_handler_are_skipped(bank: ModuleType) -> None:
    seen: list[object] = []
    projection = bank.AccountProjectionBuilder("p").on_account_closed(seen.append).build()
    projection.handle(stored(bank, bank.MoneyDepositedEvent(amount=1)), ProjectionContext("p"))
    assert seen == []


def test_a_three_argument_handler_also_gets_the_context(bank: ModuleType) -> None:
    seen: list[int] = []
    projection = (
        bank.AccountProjectionBuilder("p")
        .on_account_closed(lambda e, env, ctx: seen.append(ctx.position))
        .build()
    )
    projection.handle(stored(bank, bank.AccountClosedEvent()), ProjectionContext("p", 42))
    assert seen == [42]


def test_on_reset_runs_on_reset(bank: ModuleType) -> None:
    resets: list[str] = []
    projection = (
        bank.AccountProjectionBuilder("p")
        .on_reset(lambda ctx: resets.append(ctx.projection))
        .build()
    )
    projection.reset(ProjectionContext("p"))
    assert resets == ["p"]


def test_registering_one_event_twice_is_refused(bank: ModuleType) -> None:
    builder = bank.AccountProjectionBuilder("p").on_account_closed(lambda e, env: None)
    with pytest.raises(
        ValueError, match=r"already has a handler for account\.v1\.AccountClosedEvent"
    ):
        builder.on_account_closed(lambda e, env: None)


def test_projection_manager_runs_a_built_projection_over_the_store(bank: ModuleType) -> None:
    from eventstore.core.projections import ProjectionManager

    balances: dict[str, int] = {}
    projection = (
        bank.AccountProjectionBuilder("balances")
        .on_account_opened(lambda e, env: balances.__setitem__(env.aggregate_id, e.initial_deposit))
        .on_money_deposited(
            lambda e, env: balances.__setitem__(
                env.aggregate_id, balances[env.aggregate_id] + e.amount
            )
        )
        .build()
    )
    with SQLiteEventStore(":memory:") as store:
        events = [
            bank.AccountOpenedEvent(owner="a", initial_deposit=10),
            bank.MoneyDepositedEvent(amount=5),
        ]
        store.append(
            "acc-1",
            "Account",
            0,
            [
                NewEvent(new_event_id(), e.DESCRIPTOR.full_name, e.SerializeToString())
                for e in events
            ],
        )
        manager = ProjectionManager(store)
        manager.register(projection)
        manager.catch_up()
    assert balances == {"acc-1": 15}
