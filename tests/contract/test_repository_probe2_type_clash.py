"""Two aggregate types sharing an id: the repository names the type that holds it.

Every aggregate type in a store shares one space of ids. A repository that meets a
stream of another type says so (``AggregateTypeMismatchError``: the id, the type
holding it, choose another id), instead of "register the message class" (which would
replay another type's events) or "changed by someone else, retry" (which never helps).
"""

from __future__ import annotations

import asyncio

import pytest

from eventstore import (
    AggregateRoot,
    ConcurrencyError,
    EventDecodeError,
    NewEvent,
    Repository,
    new_event_id,
)
from eventstore.core.errors import AggregateTypeMismatchError
from eventstore.core.responses import INVALID_ARGUMENT, app_error_for
from eventstore.core.tenancy import with_tenant
from tests.support.bank import EVENT_TYPES, Account, account_repository, pb
from tests.support.protos import compiled

tpb = compiled("transfer")


class Transfer(AggregateRoot):
    """A second aggregate type, with events of its own."""

    aggregate_type = "Transfer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.amount = 0

    def request(self, amount: int) -> None:
        self.apply_change(tpb.TransferRequested(transfer_id=self.id, amount=amount))

    def apply_event(self, event) -> None:  # type: ignore[no-untyped-def]
        self.amount += event.amount


def transfer_repository(store, **kwargs) -> Repository[Transfer]:  # type: ignore[no-untyped-def]
    return Repository(store, Transfer, event_types=[tpb.TransferRequested], **kwargs)


def _account(store, aggregate_id: str = "x-1") -> None:  # type: ignore[no-untyped-def]
    account = Account(aggregate_id)
    account.open("ann", 10)
    account.deposit(5)
    account_repository(store).save(account)


def _versions(store, aggregate_id: str = "x-1") -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return [(e.aggregate_type, e.version) for e in store.load_stream(aggregate_id)]


def _assert_names_the_holder(error: AggregateTypeMismatchError, aggregate_id: str = "x-1") -> None:
    assert (error.aggregate_id, error.aggregate_type, error.stored_type) == (
        aggregate_id,
        "Transfer",
        "Account",
    )
    message = str(error)
    assert f"{aggregate_id!r} is taken by an aggregate of type 'Account'" in message
    assert "Choose another id" in message and "Register the message class" not in message
    assert not isinstance(error, (ConcurrencyError, EventDecodeError))


def test_loading_another_types_id_names_the_type_holding_it(store):
    _account(store)
    with pytest.raises(AggregateTypeMismatchError) as caught:
        transfer_repository(store).load("x-1")
    _assert_names_the_holder(caught.value)


def test_another_types_id_does_not_exist_for_this_type(store):
    _account(store)
    assert transfer_repository(store).exists("x-1") is False
    assert account_repository(store).exists("x-1") is True
    assert transfer_repository(store).exists("x-404") is False


def test_saving_a_new_aggregate_on_another_types_id_names_it_and_writes_nothing(store):
    _account(store)
    transfer = Transfer("x-1")
    transfer.request(3)
    with pytest.raises(AggregateTypeMismatchError) as caught:
        transfer_repository(store).save(transfer)
    _assert_names_the_holder(caught.value)
    with pytest.raises(AggregateTypeMismatchError):
        transfer_repository(store).save_with_command(transfer, "cmd-1")
    assert _versions(store) == [("Account", 1), ("Account", 2)]


def test_an_async_save_on_another_types_id_names_it(store):
    _account(store)
    transfer = Transfer("x-1")
    transfer.request(3)
    with pytest.raises(AggregateTypeMismatchError) as caught:
        asyncio.run(transfer_repository(store).save_async(transfer))
    _assert_names_the_holder(caught.value)
    assert _versions(store) == [("Account", 1), ("Account", 2)]


def test_retry_on_conflict_does_not_retry_another_types_id(store):
    _account(store)
    calls: list[int] = []
    with pytest.raises(AggregateTypeMismatchError) as caught:
        transfer_repository(store).retry_on_conflict("x-1", lambda t: calls.append(1))
    _assert_names_the_holder(caught.value)
    assert calls == []  # refused at the load: nothing decided, nothing retried
    assert _versions(store) == [("Account", 1), ("Account", 2)]


def test_over_a_wire_it_is_an_invalid_argument_not_a_conflict(store):
    _account(store)
    with pytest.raises(AggregateTypeMismatchError) as caught:
        transfer_repository(store).load("x-1")
    wire = app_error_for(caught.value, "cmd-1")
    assert wire is not None and wire.code == INVALID_ARGUMENT
    assert wire.details == {
        "aggregate_id": "x-1",
        "aggregate_type": "Transfer",
        "stored_type": "Account",
    }
    assert "another id" in wire.solution


def test_a_tenant_isolated_repository_names_the_plain_id(store):
    with with_tenant("acme"):
        account = Account("x-1")
        account.open("ann")
        account_repository(store, tenant_isolation=True).save(account)
        transfers = transfer_repository(store, tenant_isolation=True)
        with pytest.raises(AggregateTypeMismatchError) as caught:
            transfers.load("x-1")
        assert caught.value.aggregate_id == "x-1"
        transfer = Transfer("x-1")
        transfer.request(1)
        with pytest.raises(AggregateTypeMismatchError) as caught:
            transfers.save(transfer)
        assert caught.value.aggregate_id == "x-1"
        assert transfers.exists("x-1") is False


# -- what stays as it was -------------------------------------------------------------------
def test_a_new_aggregate_of_the_same_type_on_a_taken_id_is_still_a_conflict(store):
    _account(store)
    again = Account("x-1")
    again.open("bob")
    with pytest.raises(ConcurrencyError):
        account_repository(store).save(again)


def test_a_stream_stored_under_an_earlier_type_name_whose_events_decode_still_loads(store):
    # A renamed aggregate type: its old events carry the old name, and still decode.
    event = NewEvent(
        new_event_id(),
        pb.AccountOpened.DESCRIPTOR.full_name,
        pb.AccountOpened(owner="ann", initial_balance=7).SerializeToString(),
    )
    store.append("x-1", "LegacyAccount", 0, [event])
    repo = account_repository(store)
    assert repo.exists("x-1") is True
    loaded = repo.load("x-1")
    assert loaded.state.balance == 7
    loaded.deposit(1)
    repo.save(loaded)
    assert repo.load("x-1").state.balance == 8


def test_an_unregistered_event_of_the_same_type_is_still_a_decode_error(store):
    _account(store)
    missing_deposits = Repository(
        store, Account, event_types=[t for t in EVENT_TYPES if t is not pb.MoneyDeposited]
    )
    with pytest.raises(EventDecodeError):
        missing_deposits.load("x-1")
