"""The ports that storage adapters implement (DESIGN: core defines, adapters implement).

Everything here is synchronous (DESIGN decision 1), except ``append_async`` and
``append_many_async``, whose generic defaults (``append_async_default``,
``append_many_async_default``) run ``append`` / ``append_many`` on a worker thread.
Positions are global and
readers always ask for events *after* a position, never "from" one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .events import Event, NewEvent
from .snapshots import Snapshot, SnapshotStats

if TYPE_CHECKING:
    from .units import StreamAppend, UnitResult

DEFAULT_COMMAND_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append stored, or, for a command seen before, what it stored the first time."""

    events: tuple[Event, ...]
    already_processed: bool = False
    processed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProcessedCommand:
    command_id: str
    aggregate_id: str
    event_ids: tuple[str, ...]
    processed_at: datetime
    expires_at: datetime
    #: For a unit (``append_many``): every (aggregate id, event ids) it stored; else empty.
    unit: tuple[tuple[str, tuple[str, ...]], ...] = ()


CommitListener = Callable[[int], None]
"""Called with the new head position right after a commit, in the committing thread."""


@runtime_checkable
class EventSource(Protocol):
    """The global log in position order: all that followers and the projection runner read.

    The event store is one; a message bus or a remote store can be another.
    """

    def read_all(
        self,
        after_position: int = 0,
        *,
        limit: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> list[Event]: ...

    def head_position(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the log read by a filtered reader, and how far that read looked.

    ``scanned_to`` is the position the reader may continue after: every event
    at or below it either is in ``events`` (or an earlier page) or did not
    match the filter. It is the last event's position when the page is full,
    else the head of the log as seen by the same read, so a filtered reader
    moves past the events it skipped and an idle poll reads nothing twice.
    """

    events: list[Event]
    scanned_to: int


@runtime_checkable
class PagedEventSource(EventSource, Protocol):
    """An event source that reads a filtered page and its scanned position in one snapshot.

    Optional: ``read_page(source, ...)`` below serves sources without it.
    """

    def read_page(
        self,
        after_position: int,
        *,
        limit: int,
        event_types: Sequence[str] | None = None,
    ) -> Page: ...


def read_page(
    source: EventSource,
    after_position: int,
    *,
    limit: int,
    event_types: Sequence[str] | None = None,
) -> Page:
    """The next page of ``source`` after ``after_position``, with how far it scanned.

    Uses the source's own ``read_page`` when it has one. Otherwise it reads the
    head first and the events after it: in a log whose positions become
    visible in commit order (DESIGN decision 5) every event at or below that
    head is visible to the second read, so nothing matching is skipped.
    """
    own = getattr(source, "read_page", None)
    if own is not None:
        page: Page = own(after_position, limit=limit, event_types=event_types)
        return page
    head = source.head_position()
    events = source.read_all(after_position, limit=limit, event_types=event_types)
    if len(events) >= limit:
        return Page(events, events[-1].position)
    last = events[-1].position if events else 0
    return Page(events, max(after_position, head, last))


@runtime_checkable
class CommitSource(Protocol):
    """An event log that announces its own commits, so readers wake at once instead of polling.

    Optional: readers of a log without it poll. ``SQLiteEventStore`` has it
    for the commits made through that store object.
    """

    def add_commit_listener(self, listener: CommitListener) -> None: ...

    def remove_commit_listener(self, listener: CommitListener) -> None: ...


@runtime_checkable
class EventStore(EventSource, Protocol):
    def append(
        self,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> AppendResult:
        """Store ``events`` as versions ``expected_version + 1 ...`` all or nothing.

        With ``command_id``, a command seen before returns its original result
        and writes nothing, before any version or constraint check. A command id
        whose live record belongs to another aggregate raises
        ``CommandIdConflictError`` and writes nothing.
        """
        ...

    async def append_async(
        self,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> AppendResult:
        """``append`` without blocking the event loop: same result, same errors.

        An adapter without its own async path gets ``append_async_default`` (the
        synchronous ``append`` on a worker thread): inherit ``AsyncAppendMixin``,
        or write ``append_async = append_async_default`` in the class body.
        """
        ...

    def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """Append to several streams in one transaction, all or nothing (a ``UnitOfWork``).

        Each ``StreamAppend`` carries its own expected version; a conflict or a
        constraint on any stream writes nothing in any. With ``command_id`` the
        unit is one command: a retry returns each aggregate's original events
        (``UnitResult.already_processed``), before any check, and the id sent
        with an aggregate outside the original unit raises
        ``CommandIdConflictError``. There is no generic default: only the store
        can make several streams one transaction (the contract suite,
        ``tests/contract/test_units.py``, holds every adapter to it).
        """
        ...

    async def append_many_async(
        self,
        appends: Sequence[StreamAppend],
        *,
        command_id: str | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> UnitResult:
        """``append_many`` without blocking the event loop: same result, same errors.

        An adapter without its own async path gets ``append_many_async_default``
        (its ``append_many`` on a worker thread): inherit ``AsyncAppendMixin``, or
        write ``append_many_async = append_many_async_default`` in the class body.
        """
        ...

    def find_command(self, command_id: str, aggregate_id: str) -> AppendResult | None:
        """The original result of ``command_id`` on ``aggregate_id`` if it was stored.

        Recognises a command by its record while that lives, and after it expired
        by the deterministic id of its first event. Raises ``CommandIdConflictError``
        when the id's live record belongs to another aggregate.
        """
        ...

    def load_stream(
        self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None
    ) -> list[Event]:
        """The aggregate's events after ``after_version`` (up to ``up_to_version``), in order.

        An adapter may also offer ``load_stream_payloads`` (same arguments, rows of
        ``(event_type, version, data)`` in the same order): ``Repository.load`` then
        replays from those when no upcaster needs whole events. It is optional; the
        repository reads ``load_stream`` from a store without it, and from a subclass
        or wrapper that changes ``load_stream``.
        """
        ...

    def stream_version(self, aggregate_id: str) -> int:
        """The aggregate's last stored version, 0 when it has none."""
        ...

    def iter_all(
        self,
        after_position: int = 0,
        *,
        event_types: Sequence[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[Event]: ...

    def rebuild_constraints(self) -> int:
        """Recompute the unique-constraint table from the log; returns the number of claims."""
        ...

    def constraint_owner(self, index: str, value: str) -> str | None: ...


async def append_async_default(
    store: EventStore,
    aggregate_id: str,
    aggregate_type: str,
    expected_version: int,
    events: Sequence[NewEvent],
    *,
    command_id: str | None = None,
    command_ttl: timedelta = DEFAULT_COMMAND_TTL,
) -> AppendResult:
    """The generic ``append_async``: ``store.append`` on a worker thread (``asyncio.to_thread``).

    Usable as a function, ``await append_async_default(store, ...)``, or as a method
    of any class with an ``append``, inheriting nothing:
    ``class MyStore: append_async = append_async_default``. Context variables
    (tenant, trace) are copied to the worker thread by ``asyncio.to_thread``.
    """
    return await asyncio.to_thread(
        store.append,
        aggregate_id,
        aggregate_type,
        expected_version,
        events,
        command_id=command_id,
        command_ttl=command_ttl,
    )


async def append_many_async_default(
    store: Any,
    appends: Sequence[StreamAppend],
    *,
    command_id: str | None = None,
    command_ttl: timedelta = DEFAULT_COMMAND_TTL,
) -> UnitResult:
    """The generic ``append_many_async``: ``store.append_many`` on a worker thread.

    Usable as a function or as a method, like ``append_async_default``; the
    atomicity is ``append_many``'s own, so the default keeps it.
    """
    result: UnitResult = await asyncio.to_thread(
        store.append_many, appends, command_id=command_id, command_ttl=command_ttl
    )
    return result


class AsyncAppendMixin:
    """Gives a store with synchronous ``append`` and ``append_many`` the generic
    ``append_async`` and ``append_many_async``."""

    append_async = append_async_default
    append_many_async = append_many_async_default


def store_append_async(store: object) -> Callable[..., Any]:
    """``store.append_async`` when the store has one, else the generic default bound to it.

    The repository calls stores through this, so test doubles written before the
    async port (with ``append`` only) keep working.
    """
    own = getattr(store, "append_async", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    return functools.partial(append_async_default, store)  # type: ignore[arg-type]


def store_append_many_async(store: object) -> Callable[..., Any]:
    """``store.append_many_async`` when the store has one, else the generic default bound to
    it (``UnitOfWork.commit_async`` calls stores through this, as repositories do for
    ``append_async``)."""
    own = getattr(store, "append_many_async", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    return functools.partial(append_many_async_default, store)


@runtime_checkable
class SnapshotStore(Protocol):
    def save_snapshot(self, snapshot: Snapshot) -> None: ...

    def latest_snapshot(
        self, aggregate_id: str, at_or_before_version: int | None = None
    ) -> Snapshot | None: ...

    def list_snapshots(self, aggregate_id: str) -> list[Snapshot]: ...

    def delete_snapshots_older_than(self, aggregate_id: str, version: int) -> int: ...

    def delete_snapshots_of_type(self, aggregate_type: str) -> int: ...

    def keep_last_snapshots(self, aggregate_id: str, count: int) -> int: ...

    def snapshot_stats(self) -> SnapshotStats: ...


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a projection's progress is kept: the last position it handled, and how far it
    scanned past that (a filtered projection reads on after the scanned position)."""

    def load_checkpoint(self, name: str) -> int:
        """The last position ``name`` handled; 0 when it never ran."""
        ...

    def load_scanned_position(self, name: str) -> int:
        """How far ``name`` has read the log (never below its checkpoint); 0 when it never ran."""
        ...

    def save_checkpoint(
        self, name: str, position: int, *, scanned_position: int | None = None
    ) -> None:
        """Store both; ``scanned_position`` defaults to ``position`` (so 0 resets both)."""
        ...

    def delete_checkpoint(self, name: str) -> None: ...


@runtime_checkable
class CommandStore(Protocol):
    def processed_command(self, command_id: str) -> ProcessedCommand | None: ...

    def delete_expired_commands(self, now: datetime | None = None) -> int: ...
