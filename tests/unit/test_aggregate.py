"""AggregateRoot: raising an event applies it at once; the id is fixed at construction."""

from __future__ import annotations

import pytest

from eventstore import AggregateRoot, AppError, EventMetadata, UniqueConstraint
from tests.support.bank import Account, pb


def test_apply_change_applies_the_event_at_once():
    account = Account("acc-1")
    account.open("ann", 10)
    account.deposit(5)
    assert account.state.balance == 15
    assert account.state.owner == "ann"


def test_new_aggregate_with_one_event_has_version_one():
    account = Account("acc-1")
    account.open("ann")
    assert account.version == 1
    assert account.stored_version == 0


def test_version_counts_uncommitted_events():
    account = Account("acc-1")
    account.open("ann")
    account.deposit(1)
    account.deposit(2)
    assert account.version == 3
    assert len(account.uncommitted_events) == 3


def test_new_aggregate_has_version_zero_and_nothing_uncommitted():
    account = Account("acc-1")
    assert account.version == 0
    assert account.uncommitted_events == ()


def test_uncommitted_events_keep_message_metadata_and_constraints_in_order():
    account = Account("acc-1")
    meta = EventMetadata(correlation_id="corr-1")
    claim = UniqueConstraint("owner", "ann")
    account.apply_change(pb.AccountOpened(owner="ann"), meta, [claim])
    account.deposit(3)
    first, second = account.uncommitted_events
    assert first.message == pb.AccountOpened(owner="ann")
    assert first.metadata == meta
    assert first.constraints == (claim,)
    assert first.event_type == "testbank.v1.AccountOpened"
    assert second.message == pb.MoneyDeposited(amount=3)
    assert second.metadata is None


def test_uncommitted_events_cannot_be_changed_from_outside():
    account = Account("acc-1")
    account.open("ann")
    events = account.uncommitted_events
    assert isinstance(events, tuple)
    account.deposit(1)
    assert len(events) == 1


def test_id_is_fixed_at_construction():
    account = Account("acc-1")
    account.open("someone-else")
    assert account.id == "acc-1"
    with pytest.raises(AttributeError):
        account.id = "acc-2"  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["", None, 42])
def test_empty_or_non_string_id_is_rejected(bad):
    with pytest.raises(ValueError, match="non-empty string id"):
        Account(bad)  # type: ignore[arg-type]


def test_type_defaults_to_class_attribute_then_class_name():
    class Plain(AggregateRoot):
        pass

    assert Account("acc-1").type == "Account"
    assert Plain("p-1").type == "Plain"
    assert Plain("p-1", "Custom").type == "Custom"


def test_failing_apply_records_nothing():
    class Strict(AggregateRoot):
        def apply_event(self, event):  # type: ignore[no-untyped-def]
            if isinstance(event, pb.MoneyWithdrawn):
                raise AppError("NOT_ALLOWED", "withdrawals are not allowed here")

    agg = Strict("s-1")
    agg.apply_change(pb.MoneyDeposited(amount=1))
    with pytest.raises(AppError):
        agg.apply_change(pb.MoneyWithdrawn(amount=1))
    assert agg.version == 1
    assert [p.message for p in agg.uncommitted_events] == [pb.MoneyDeposited(amount=1)]


def test_failing_command_before_apply_leaves_state_and_version():
    account = Account("acc-1")
    account.open("ann", 5)
    with pytest.raises(AppError) as info:
        account.withdraw(50)
    assert info.value.code == "INSUFFICIENT_FUNDS"
    assert account.version == 1
    assert account.state.balance == 5


def test_apply_change_rejects_non_messages():
    account = Account("acc-1")
    with pytest.raises(TypeError, match="protobuf message"):
        account.apply_change({"amount": 1})  # type: ignore[arg-type]
    assert account.version == 0


def test_aggregate_without_apply_event_says_what_to_implement():
    class Bare(AggregateRoot):
        pass

    with pytest.raises(NotImplementedError, match="apply_event"):
        Bare("b-1").apply_change(pb.MoneyDeposited(amount=1))
    assert Bare("b-1").version == 0


def test_aggregate_without_snapshot_support_says_what_to_implement():
    class Bare(AggregateRoot):
        pass

    with pytest.raises(NotImplementedError, match="snapshot_state"):
        Bare("b-1").snapshot_state()


def test_subclass_may_override_setattr_and_getattr():
    class Forwarding(AggregateRoot):
        def __init__(self, aggregate_id: str) -> None:
            super().__init__(aggregate_id)
            object.__setattr__(self, "fields", {})

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            fields = object.__getattribute__(self, "fields")
            if name in fields:
                return fields[name]
            raise AttributeError(name)

        def __setattr__(self, name: str, value) -> None:  # type: ignore[no-untyped-def]
            self.fields[name] = value

        def apply_event(self, event) -> None:  # type: ignore[no-untyped-def]
            self.balance = getattr(self, "balance", 0) + event.amount

    agg = Forwarding("f-1")
    agg.apply_change(pb.MoneyDeposited(amount=4))
    agg.apply_change(pb.MoneyDeposited(amount=3))
    assert agg.balance == 7
    assert agg.version == 2
    assert agg.fields == {"balance": 7}


def test_repr_names_type_id_and_version():
    account = Account("acc-1")
    account.open("ann")
    assert repr(account) == "<Account Account id='acc-1' version=1>"


class _Slotted(Account):
    __slots__ = ("note",)


def test_reset_to_takes_the_other_objects_state_versions_and_pending_events():
    account = _Slotted("acc-1")
    account.open("ann", 10)
    account.note = "stale"
    stored = _Slotted("acc-1")
    stored.replay(pb.AccountOpened(owner="bo", initial_balance=3), 1)
    stored.note = "fresh"
    account.reset_to(stored)
    assert (account.state.owner, account.state.balance, account.note) == ("bo", 3, "fresh")
    assert (account.version, account.stored_version, account.uncommitted_events) == (1, 1, ())


def test_reset_to_refuses_another_aggregate_or_class():
    with pytest.raises(ValueError, match="another aggregate"):
        Account("acc-1").reset_to(Account("acc-2"))
    with pytest.raises(TypeError, match="must be of class Account"):
        Account("acc-1").reset_to(_Slotted("acc-1"))
