"""Small builders for the contract tests: events to append, written with the public API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventstore import (
    EventMetadata,
    NewEvent,
    UniqueConstraint,
    deterministic_event_id,
    new_event_id,
)
from tests.support.bank import pb

DEPOSITED = pb.MoneyDeposited.DESCRIPTOR.full_name
OPENED = pb.AccountOpened.DESCRIPTOR.full_name
WITHDRAWN = pb.MoneyWithdrawn.DESCRIPTOR.full_name


def deposit(
    amount: int = 1,
    *,
    event_id: str | None = None,
    metadata: EventMetadata | None = None,
    constraints: Sequence[UniqueConstraint] = (),
) -> NewEvent:
    return NewEvent(
        event_id or new_event_id(),
        DEPOSITED,
        pb.MoneyDeposited(amount=amount).SerializeToString(),
        metadata or EventMetadata(),
        tuple(constraints),
    )


def opened(owner: str = "ann", *, constraints: Sequence[UniqueConstraint] = ()) -> NewEvent:
    return NewEvent(
        new_event_id(),
        OPENED,
        pb.AccountOpened(owner=owner).SerializeToString(),
        EventMetadata(),
        tuple(constraints),
    )


def withdrawal(amount: int = 1) -> NewEvent:
    return NewEvent(new_event_id(), WITHDRAWN, pb.MoneyWithdrawn(amount=amount).SerializeToString())


def command_events(command_id: str, aggregate_id: str, count: int) -> list[NewEvent]:
    """The events a repository would append for a command: deterministic ids."""
    return [
        deposit(i + 1, event_id=deterministic_event_id(command_id, aggregate_id, i))
        for i in range(count)
    ]


def append_deposits(store: Any, aggregate_id: str, count: int) -> list[Any]:
    """Append ``count`` single-event commits to ``aggregate_id``; returns the stored events."""
    stored = []
    for _ in range(count):
        version = store.stream_version(aggregate_id)
        stored.extend(store.append(aggregate_id, "Account", version, [deposit()]).events)
    return stored


def log_contents(store: Any) -> tuple[Any, ...]:
    """Everything observable in the log, to compare a store before and after a failure."""
    return tuple(
        (e.position, e.event_id, e.aggregate_id, e.version, e.event_type, e.data)
        for e in store.read_all()
    )
