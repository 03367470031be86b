"""Loading and saving aggregates: replay, snapshots, idempotent commands, retries."""

from __future__ import annotations

import logging
import numbers
import random
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Generic, TypeVar

from google.protobuf.message import Message

from .aggregate import AggregateRoot
from .arguments import check_command_id, check_metadata
from .commands import CommandResult
from .errors import AggregateNotFoundError, ConcurrencyError, VersionNotFoundError
from .event_types import EventTypeRegistry
from .events import Event, EventMetadata, NewEvent
from .ids import deterministic_event_id, new_event_id
from .ports import DEFAULT_COMMAND_TTL, AppendResult, EventStore, SnapshotStore
from .snapshots import Snapshot, SnapshotStrategy, SnapshotUpcaster
from .upcasting import Upcasters

log = logging.getLogger("eventstore.repository")

A = TypeVar("A", bound=AggregateRoot)


class Repository(Generic[A]):
    """Loads aggregates by replaying their events and saves their new events.

    ``factory(id)`` makes an empty aggregate; ``event_types`` are the proto
    message classes of its events (or a registry of them).
    """

    def __init__(
        self,
        store: EventStore,
        factory: Callable[[str], A],
        *,
        event_types: Iterable[type[Message]] | EventTypeRegistry = (),
        snapshot_store: SnapshotStore | None = None,
        snapshot_strategy: SnapshotStrategy | None = None,
        upcasters: Upcasters | None = None,
        snapshot_upcaster: SnapshotUpcaster | None = None,
        command_ttl: timedelta = DEFAULT_COMMAND_TTL,
    ) -> None:
        self.store = store
        self.factory = factory
        self.event_types = (
            event_types
            if isinstance(event_types, EventTypeRegistry)
            else EventTypeRegistry(event_types)
        )
        if snapshot_store is None and isinstance(store, SnapshotStore):
            snapshot_store = store
        if snapshot_strategy is not None and snapshot_store is None:
            raise ValueError(
                "a snapshot strategy needs a snapshot store: pass snapshot_store=, or use an "
                "event store that also stores snapshots"
            )
        self.snapshot_store = snapshot_store
        self.snapshot_strategy = snapshot_strategy
        self.upcasters = upcasters or Upcasters()
        self.snapshot_upcaster = snapshot_upcaster
        self.command_ttl = command_ttl

    # -- reading ---------------------------------------------------------------
    def decode(self, event: Event) -> Message:
        """The payload of a stored event as a message, after upcasting."""
        if self.upcasters:
            event = self.upcasters.upcast(event)
        return self.event_types.decode(event)

    def exists(self, aggregate_id: str) -> bool:
        return self.store.stream_version(aggregate_id) > 0

    def load(self, aggregate_id: str, at_version: int | None = None) -> A:
        """The aggregate as of its last version, or as of ``at_version``."""
        if at_version is not None:
            at_version = self._checked_version(aggregate_id, at_version)
        aggregate = self.factory(aggregate_id)
        snapshot = self._usable_snapshot(aggregate, at_version)
        base = 0
        if snapshot is not None:
            aggregate.restore_snapshot(snapshot.data)
            base = snapshot.version
        events = self.store.load_stream(aggregate_id, after_version=base, up_to_version=at_version)
        if not events and snapshot is None:
            raise AggregateNotFoundError(aggregate_id, aggregate.type)
        decode = self.decode
        replay = aggregate.replay
        for event in events:
            replay(decode(event), event.version)
        version = events[-1].version if events else base
        if at_version is not None and version < at_version:
            raise VersionNotFoundError(aggregate_id, at_version, version)
        aggregate.mark_restored(version, base)
        return aggregate

    @staticmethod
    def _checked_version(aggregate_id: str, at_version: object) -> int:
        if isinstance(at_version, bool) or not isinstance(at_version, numbers.Integral):
            raise TypeError(
                f"cannot load aggregate {aggregate_id!r} at_version={at_version!r}: at_version "
                f"must be a whole number (an int from 1 up), got {type(at_version).__name__}. "
                "Leave it out for the latest version."
            )
        at_version = int(at_version)
        if at_version < 1:
            raise ValueError(
                f"cannot load aggregate {aggregate_id!r} at_version={at_version}: versions start "
                "at 1 (leave at_version out for the latest)"
            )
        return at_version

    def _usable_snapshot(self, aggregate: A, at_version: int | None) -> Snapshot | None:
        if self.snapshot_store is None:
            return None
        snapshot = self.snapshot_store.latest_snapshot(aggregate.id, at_version)
        if snapshot is None:
            return None
        if snapshot.schema_key != aggregate.schema_key and self.snapshot_upcaster is not None:
            snapshot = self.snapshot_upcaster(snapshot)
        if snapshot is None or snapshot.schema_key != aggregate.schema_key:
            log.info(
                "ignoring snapshot of %r: its schema key differs from %s's; replaying events",
                aggregate.id,
                type(aggregate).__name__,
            )
            return None
        return snapshot

    # -- writing ---------------------------------------------------------------
    def save(self, aggregate: A, metadata: EventMetadata | None = None) -> CommandResult:
        check_metadata("Repository.save", metadata)
        return self._save(aggregate, None, metadata)

    def save_with_command(
        self, aggregate: A, command_id: str, metadata: EventMetadata | None = None
    ) -> CommandResult:
        """Save under ``command_id``: a command seen before returns its original result.

        Then nothing is written, and ``aggregate`` is brought to its stored state in
        place: the events applied for this run are dropped (they were stored by the
        first run, or the command decided otherwise then), so the next command on the
        object starts from what the store holds.
        """
        check_command_id("save_with_command", command_id)
        check_metadata("save_with_command", metadata)
        return self._save(aggregate, command_id, metadata)

    def _save(
        self, aggregate: A, command_id: str | None, metadata: EventMetadata | None
    ) -> CommandResult:
        pending = aggregate.uncommitted_events
        if command_id is None and not pending:
            return CommandResult("", ())
        base = EventMetadata(causation_id=command_id or "").merged(metadata)
        new_events = [
            NewEvent(
                deterministic_event_id(command_id, aggregate.id, index)
                if command_id
                else new_event_id(),
                p.message.DESCRIPTOR.full_name,
                p.message.SerializeToString(),
                base.merged(p.metadata),
                p.constraints,
            )
            for index, p in enumerate(pending)
        ]
        result = self.store.append(
            aggregate.id,
            aggregate.type,
            aggregate.stored_version,
            new_events,
            command_id=command_id,
            command_ttl=self.command_ttl,
        )
        if result.already_processed:
            self._reload_in_place(aggregate)
            return self._command_result(command_id or "", result)
        if result.events:
            aggregate.mark_committed(result.events[-1].version)
            self._maybe_snapshot(aggregate)
        return self._command_result(command_id or "", result)

    def _reload_in_place(self, aggregate: A) -> None:
        """Drop ``aggregate``'s pending events and replay its stored state into the same object."""
        try:
            fresh = self.load(aggregate.id)
        except AggregateNotFoundError:
            fresh = self.factory(aggregate.id)
        aggregate.reset_to(fresh)

    @staticmethod
    def _command_result(command_id: str, result: AppendResult) -> CommandResult:
        return CommandResult(
            command_id, result.events, result.already_processed, result.processed_at
        )

    def _maybe_snapshot(self, aggregate: A) -> None:
        if self.snapshot_strategy is None or self.snapshot_store is None:
            return
        since = aggregate.version - aggregate.snapshot_version
        try:
            if self.snapshot_strategy(aggregate.version, since):
                self.save_snapshot(aggregate)
        except Exception:
            # A snapshot is an optimisation: the command is already stored.
            log.exception(
                "snapshot of %s %r at version %d failed",
                aggregate.type,
                aggregate.id,
                aggregate.version,
            )

    def save_snapshot(self, aggregate: A) -> Snapshot:
        """Snapshot the aggregate's stored state now."""
        if self.snapshot_store is None:
            raise ValueError(
                f"cannot snapshot aggregate {aggregate.id!r}: this repository has no snapshot "
                "store. Pass snapshot_store= (or use an event store that stores snapshots)"
            )
        if aggregate.uncommitted_events:
            raise ValueError(
                f"aggregate {aggregate.id!r} has {len(aggregate.uncommitted_events)} unsaved "
                "events; save it before taking a snapshot"
            )
        snapshot = Snapshot(
            aggregate.id,
            aggregate.type,
            aggregate.version,
            aggregate.schema_key,
            aggregate.snapshot_state(),
        )
        self.snapshot_store.save_snapshot(snapshot)
        aggregate.mark_snapshotted(aggregate.version)
        return snapshot

    def retry_on_conflict(
        self,
        aggregate_id: str,
        fn: Callable[[A], object],
        *,
        command_id: str | None = None,
        metadata: EventMetadata | None = None,
        attempts: int = 5,
        backoff: float = 0.005,
    ) -> CommandResult:
        """Load (or create), call ``fn``, save; on a version conflict reload and retry.

        A command id seen before returns its original result without calling ``fn``.
        """
        check_command_id("retry_on_conflict", command_id, optional=True)
        check_metadata("retry_on_conflict", metadata)
        if attempts < 1:
            raise ValueError(f"attempts must be 1 or more, got {attempts}")
        for attempt in range(1, attempts + 1):
            try:
                aggregate = self.load(aggregate_id)
            except AggregateNotFoundError:
                aggregate = self.factory(aggregate_id)
            # Look the command up after loading: a run of it committed before the load
            # is found here, one committed after it is found by the append's own check.
            # Looking first would let fn see a state the command already changed.
            if command_id:
                known = self.store.find_command(command_id, aggregate_id)
                if known is not None:
                    return self._command_result(command_id, known)
            fn(aggregate)
            try:
                return self._save(aggregate, command_id, metadata)
            except ConcurrencyError:
                if attempt == attempts:
                    raise
                time.sleep(backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))
        raise AssertionError("unreachable")
