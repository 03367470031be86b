"""Saving several aggregates atomically: one unit, one transaction, one command id.

A transfer debits one account and credits another; stored one aggregate at a
time, a crash between the two saves leaves money missing. ``append_many``
(both stores) writes several streams in one transaction, each with its own
expected version, all or nothing. ``UnitOfWork`` collects the aggregates that
repositories save and hands them to ``append_many`` when its block ends.

One command id covers the whole unit: its record lists every aggregate and
its event ids (docs/decisions.md, "A unit's command record lists every
aggregate"), so a retry returns each aggregate's original events, and after
the record expired each aggregate's deterministic event ids still recognise it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .arguments import (
    check_append,
    check_command_id,
    check_distinct_event_ids,
    check_metadata,
    check_ttl,
)
from .constraints import ConstraintOp, ConstraintTable, apply_constraints
from .errors import ConcurrencyError, UniqueConstraintError
from .events import Event, EventMetadata, NewEvent
from .ports import (
    DEFAULT_COMMAND_TTL,
    AppendResult,
    store_append_many_async,
)

if TYPE_CHECKING:
    from .aggregate import AggregateRoot
    from .repository import Repository


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of a unit: what ``append`` would take for it."""

    aggregate_id: str
    aggregate_type: str
    expected_version: int
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class UnitResult:
    """What a unit stored, per aggregate in the unit's order; on a retry, what it stored first."""

    results: tuple[tuple[str, AppendResult], ...]
    already_processed: bool = False
    processed_at: datetime | None = None

    def __getitem__(self, aggregate_id: str) -> AppendResult:
        for own, result in self.results:
            if own == aggregate_id:
                return result
        raise KeyError(
            f"aggregate {aggregate_id!r} is not in this unit; it holds "
            f"{[a for a, _ in self.results]}"
        )

    @property
    def aggregate_ids(self) -> list[str]:
        return [a for a, _ in self.results]

    @property
    def events(self) -> tuple[Event, ...]:
        """Every event of the unit in position order."""
        return tuple(sorted((e for _, r in self.results for e in r.events), key=_position))


def _position(event: Event) -> int:
    return event.position


def check_unit(
    path: str, appends: object, command_id: object, command_ttl: object
) -> list[StreamAppend]:
    """The arguments of ``append_many``, checked before any SQL runs (``path`` names the
    store in ``IntegerRangeError``)."""
    check_command_id("append_many", command_id, optional=True)
    check_ttl("append_many", command_ttl)
    if not isinstance(appends, Sequence) or isinstance(appends, (str, bytes)):
        raise TypeError(
            f"append_many: appends must be a sequence of StreamAppend, got {type(appends).__name__}"
        )
    if not appends:
        raise ValueError("append_many needs at least one StreamAppend; got an empty unit")
    seen: set[str] = set()
    for item in appends:
        if not isinstance(item, StreamAppend):
            raise TypeError(
                f"append_many: each item must be a StreamAppend(aggregate_id, aggregate_type, "
                f"expected_version, events), got {type(item).__name__}"
            )
        check_append(
            path,
            item.aggregate_id,
            item.aggregate_type,
            item.expected_version,
            item.events,
            command_id,
            command_ttl,
        )
        if item.aggregate_id in seen:
            raise ValueError(
                f"append_many: aggregate {item.aggregate_id!r} appears twice in one unit; put "
                "all of its events in one StreamAppend"
            )
        seen.add(item.aggregate_id)
    if len(appends) > 1:
        check_distinct_event_ids("append_many", [item.events for item in appends])
    return list(appends)


def unit_json(parts: Sequence[tuple[str, Sequence[str]]]) -> str:
    """The unit column of a command record: ``[[aggregate_id, [event ids]], ...]``."""
    import json

    return json.dumps([[a, list(ids)] for a, ids in parts], separators=(",", ":"))


def unit_event_ids(unit: str | None, aggregate_id: str) -> list[str] | None:
    """The event ids ``aggregate_id`` stored in the unit recorded as ``unit`` (None: not in it)."""
    if not unit:
        return None
    import json

    for own, ids in json.loads(unit):
        if own == aggregate_id:
            return list(ids)
    return None


@dataclass
class _Entry:
    aggregate: AggregateRoot
    repository: Repository[Any] | None
    metadata: EventMetadata | None


@dataclass
class UnitOfWork:
    """Aggregates saved together: ``with UnitOfWork(store, command_id=...) as uow:``.

    ``uow.save(aggregate, repository)`` (or ``repository.save(aggregate,
    unit=uow)``, which generated repositories inherit) adds an aggregate;
    nothing is written until the block ends without an error, when every
    aggregate's pending events go to ``store.append_many`` in one transaction.
    A failing block writes nothing. After the commit each aggregate is marked
    committed (or, for a retry, reloaded as stored) through its repository;
    ``uow.result`` is the ``UnitResult``. ``commit()`` / ``await
    commit_async()`` do the same without a ``with`` block.
    """

    store: Any
    command_id: str | None = None
    metadata: EventMetadata | None = None
    command_ttl: timedelta = DEFAULT_COMMAND_TTL
    result: UnitResult | None = None
    _entries: list[_Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_command_id("UnitOfWork", self.command_id, optional=True)
        check_ttl("UnitOfWork", self.command_ttl)
        check_metadata("UnitOfWork", self.metadata)

    def save(
        self,
        aggregate: AggregateRoot,
        repository: Repository[Any] | None = None,
        metadata: EventMetadata | None = None,
    ) -> None:
        """Add ``aggregate`` to the unit (saved when the unit commits)."""
        check_metadata("UnitOfWork.save", metadata)
        if self.result is not None:
            raise RuntimeError(
                "this UnitOfWork has committed; open a new one for the next unit of work"
            )
        for entry in self._entries:
            if entry.aggregate.id == aggregate.id:
                if entry.aggregate is not aggregate:
                    raise ValueError(
                        f"two objects for aggregate {aggregate.id!r} in one unit: save the "
                        "same object, so its events are stored once and in order"
                    )
                return
        self._entries.append(_Entry(aggregate, repository, metadata))

    def __iter__(self) -> Iterator[AggregateRoot]:
        return iter([e.aggregate for e in self._entries])

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(entry: _Entry) -> str:
        """The id the store keeps for the entry's aggregate (its repository's tenant scope)."""
        repository = entry.repository
        if repository is not None and repository.tenant_isolation:
            return repository._stored_id_of(entry.aggregate)
        return entry.aggregate.id

    def _stored_command_id(self) -> str | None:
        """The unit's command id as the store keys it (per tenant with tenant isolation)."""
        if self.command_id and self._isolated():
            from .tenancy import scoped_key

            return scoped_key(self.command_id)
        return self.command_id

    def _own_constraint_error(self, exc: UniqueConstraintError) -> UniqueConstraintError:
        """The error as the claiming aggregate's repository reports it on a single save.

        With tenant isolation that is the value the client gave (not the stored
        ``<tenant>::<value>``), the plain id of the claimant and no owner: a
        unit must not tell a client more than a single save would.
        """
        for entry in self._entries:
            if entry.repository is not None and self._key(entry) == exc.requester:
                return entry.repository._own_constraint_error(exc)
        if not self._isolated():
            return exc
        from .tenancy import SEPARATOR, current_tenant, split_stored_id

        prefix = f"{current_tenant()}{SEPARATOR}"
        value = exc.value[len(prefix) :] if exc.value.startswith(prefix) else exc.value
        return type(exc)(exc.index, value, None, split_stored_id(exc.requester)[1])

    def _isolated(self) -> bool:
        return any(
            e.repository is not None and e.repository.tenant_isolation for e in self._entries
        )

    def _appends(self) -> list[StreamAppend]:
        from .ids import deterministic_event_id, new_event_id

        appends = []
        stored_command = self._stored_command_id()  # what the store derives ids from
        for entry in self._entries:
            aggregate = entry.aggregate
            key = self._key(entry)
            constraints = (
                entry.repository._scoped_constraints
                if entry.repository is not None
                else (lambda c: c)
            )
            base = EventMetadata(causation_id=self.command_id or "").merged(self.metadata)
            base = base.merged(entry.metadata)
            events = [
                NewEvent(
                    deterministic_event_id(stored_command, key, index)
                    if stored_command
                    else new_event_id(),
                    p.message.DESCRIPTOR.full_name,
                    p.message.SerializeToString(),
                    base.merged(p.metadata),
                    constraints(p.constraints),
                )
                for index, p in enumerate(aggregate.uncommitted_events)
            ]
            appends.append(StreamAppend(key, aggregate.type, aggregate.stored_version, events))
        return appends

    def _done(self, result: UnitResult) -> UnitResult:
        self.result = result
        for entry in self._entries:
            if entry.repository is not None:
                entry.repository.unit_committed(entry.aggregate, result)
            elif result.already_processed:
                raise RuntimeError(
                    f"unit {self.command_id!r} was processed before; the aggregates have no "
                    "repository to reload them from: pass one to uow.save(aggregate, repo)"
                )
            else:
                events = result[self._key(entry)].events
                if events:
                    entry.aggregate.mark_committed(events[-1].version)
        return result

    def commit(self) -> UnitResult:
        """Write every aggregate's pending events in one transaction."""
        if not self._entries:
            self.result = UnitResult(())
            return self.result
        try:
            result = self.store.append_many(
                self._appends(),
                command_id=self._stored_command_id(),
                command_ttl=self.command_ttl,
            )
        except Exception as exc:
            self._evict_all()
            if isinstance(exc, UniqueConstraintError):
                raise self._own_constraint_error(exc) from None
            raise
        return self._done(result)

    def _evict_all(self) -> None:
        for entry in self._entries:
            if entry.repository is not None:
                entry.repository.evict(entry.aggregate.id)

    async def commit_async(self) -> UnitResult:
        """``commit`` for ``async`` code: the loop never waits on the store."""
        if not self._entries:
            self.result = UnitResult(())
            return self.result
        append_many_async = store_append_many_async(self.store)
        try:
            result: UnitResult = await append_many_async(
                self._appends(), command_id=self._stored_command_id(), command_ttl=self.command_ttl
            )
        except Exception as exc:
            self._evict_all()
            if isinstance(exc, UniqueConstraintError):
                raise self._own_constraint_error(exc) from None
            raise
        if result.already_processed:
            return await asyncio.to_thread(self._done, result)
        return self._done(result)

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit_async()


def apply_unit_constraints(
    items: Sequence[StreamAppend],
    table: ConstraintTable,
    stream_version: Callable[[str], int],
) -> None:
    """A unit's versions, then its constraints, before any of its events is written.

    Every member's version is checked first, so a stale unit is a ``ConcurrencyError``
    whatever its constraints say. Then each member's claims and releases apply in save
    order, each member's in its own order; a claim of a value that a later member of
    the unit releases waits for the end, so a value moves between members (or two
    swap) whatever order they were saved in.
    """
    for item in items:
        actual = stream_version(item.aggregate_id)
        if actual != item.expected_version:
            raise ConcurrencyError(item.aggregate_id, item.expected_version, actual)
    waiting: list[tuple[str, str, str]] = []
    for n, item in enumerate(items):
        released_later = {
            (c.index, c.value): other.aggregate_id
            for other in items[n + 1 :]
            for event in other.events
            for c in event.constraints
            if c.op is ConstraintOp.RELEASE
        }
        held = apply_constraints(table, item.aggregate_id, item.events, released_later)
        waiting += [(index, value, item.aggregate_id) for index, value in held]
    for index, value, aggregate_id in waiting:
        owner = table.owner(index, value)
        if owner is None:
            table.claim(index, value, aggregate_id)
        elif owner != aggregate_id:
            raise UniqueConstraintError(index, value, owner, aggregate_id)
