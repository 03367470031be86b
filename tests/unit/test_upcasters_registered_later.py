"""An ``Upcasters`` registry handed over while still empty is the one used: upcasters
registered on it afterwards apply (a repository, a projection manager, a follower).

An empty registry is falsy (``bool(Upcasters())`` is False); these readers used to
replace it, or decide not to upcast at all, because of that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import Event, NewEvent, ProjectionContext, Upcasters, new_event_id
from eventstore.core.projections import CheckpointedReadModel, ProjectionManager, projection
from eventstore.sqlite import SQLiteEventStore
from tests.support.bank import Account, account_repository, pb

DEPOSITED = pb.MoneyDeposited.DESCRIPTOR.full_name
DEPOSITED_V1 = pb.MoneyDepositedV1.DESCRIPTOR.full_name


def _v1_to_v2(event: Event) -> Event:
    old = pb.MoneyDepositedV1.FromString(event.data)
    new = pb.MoneyDeposited(amount=int(old.amount_text))
    return event.with_payload(DEPOSITED, new.SerializeToString())


def _register_later(upcasters: Upcasters) -> None:
    upcasters.register(DEPOSITED_V1, _v1_to_v2, to=DEPOSITED)


@pytest.fixture
def store(db_path: Path):  # type: ignore[no-untyped-def]
    """acc-1 opened with 10, then a deposit of 15 stored by an older release (V1)."""
    with SQLiteEventStore(db_path) as s:
        account = Account("acc-1")
        account.open("ann", 10)
        account_repository(s).save(account)
        old = pb.MoneyDepositedV1(amount_text="15").SerializeToString()
        s.append("acc-1", "Account", 1, [NewEvent(new_event_id(), DEPOSITED_V1, old)])
        yield s


def test_a_repository_uses_upcasters_registered_after_it_was_built(store):
    upcasters = Upcasters()
    repo = account_repository(store, upcasters=upcasters)
    _register_later(upcasters)
    assert repo.upcasters is upcasters
    loaded = repo.load("acc-1")
    assert (loaded.version, loaded.state.balance) == (2, 25)


def _deposits_seen(manager: ProjectionManager, **register) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, int]] = []

    @projection("deposits", event_types=[DEPOSITED])
    def deposits(event: Event, ctx: ProjectionContext) -> None:
        seen.append((event.event_type, pb.MoneyDeposited.FromString(event.data).amount))

    manager.register(deposits, read_model=CheckpointedReadModel(), **register)
    return seen


def test_a_manager_uses_its_upcasters_registered_after_a_projection(store):
    upcasters = Upcasters()
    manager = ProjectionManager(store, upcasters=upcasters)
    seen = _deposits_seen(manager)
    _register_later(upcasters)
    manager.catch_up()
    assert seen == [(DEPOSITED, 15)]


def test_register_uses_upcasters_filled_after_the_registration(store):
    upcasters = Upcasters()
    manager = ProjectionManager(store)
    seen = _deposits_seen(manager, upcasters=upcasters)
    _register_later(upcasters)
    manager.catch_up()
    assert seen == [(DEPOSITED, 15)]


def test_a_projections_own_empty_upcasters_are_not_replaced_by_the_managers(store):
    own, managers = Upcasters(), Upcasters()
    managers.register(DEPOSITED_V1, lambda e: e.with_payload("bank.Wrong", e.data))
    seen: list[str] = []

    @projection("types")
    def types(event: Event, ctx: ProjectionContext) -> None:
        seen.append(event.event_type)

    types.upcasters = own  # type: ignore[attr-defined]
    manager = ProjectionManager(store, upcasters=managers)
    manager.register(types, read_model=CheckpointedReadModel())
    _register_later(own)
    manager.catch_up()
    assert seen == [pb.AccountOpened.DESCRIPTOR.full_name, DEPOSITED]


def test_a_follower_uses_upcasters_registered_after_it_started(store):
    upcasters = Upcasters()
    with store.follow(0, event_types=[DEPOSITED], upcasters=upcasters) as sub:
        _register_later(upcasters)
        events = sub.next_batch(timeout=0)
    assert [(e.event_type, pb.MoneyDeposited.FromString(e.data).amount) for e in events] == [
        (DEPOSITED, 15)
    ]
