"""Loading and saving aggregates: replay, snapshots, idempotent commands, retries."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import logging
import numbers
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from . import instrumentation as _instr
from .aggregate import AggregateRoot
from .arguments import check_command_id, check_count, check_metadata, check_ttl, lone_surrogate
from .commands import CommandResult
from .constraints import UniqueConstraint
from .errors import (
    AggregateNotFoundError,
    AggregateTypeMismatchError,
    CommandIdConflictError,
    ConcurrencyError,
    EventDecodeError,
    InvalidAggregateIdError,
    TenantMismatchError,
    UniqueConstraintError,
    VersionNotFoundError,
)
from .event_types import EventTypeRegistry
from .events import Event, EventMetadata, NewEvent
from .ids import deterministic_event_id, new_event_id
from .offloop import DEFAULT_WORKERS, OffLoopCalls
from .ports import (
    DEFAULT_COMMAND_TTL,
    AppendResult,
    EventStore,
    SnapshotStore,
    store_append_async,
)
from .snapshots import Snapshot, SnapshotStrategy, SnapshotUpcaster
from .tenancy import TenantEventSource, current_tenant, scoped_key, split_stored_id, stored_id
from .units import UnitOfWork, UnitResult
from .upcasting import Upcasters

log = logging.getLogger("eventstore.repository")

# What _save runs the append in when no instrumentation hook is installed (the usual case):
# building the operation's context manager and attributes costs about 1 µs per command.
_NO_OPERATION = contextlib.nullcontext()


def _unchanged(constraints: tuple[UniqueConstraint, ...]) -> tuple[UniqueConstraint, ...]:
    return constraints


# Store classes by whether a replay may read them with load_stream_payloads.
_PAYLOAD_READING: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _reads_payloads(store_type: type) -> bool:
    """Whether ``store_type`` has ``load_stream_payloads`` from the class in its MRO
    that also gives it its ``load_stream`` (so both read the same stream)."""
    known = _PAYLOAD_READING.get(store_type)
    if known is None:
        owner = next((c for c in store_type.__mro__ if "load_stream_payloads" in c.__dict__), None)
        known = owner is not None and getattr(store_type, "load_stream", None) is getattr(
            owner, "load_stream", object()
        )
        _PAYLOAD_READING[store_type] = known
    return known


def _append_operation(
    aggregate: AggregateRoot, command_id: str | None, count: int
) -> contextlib.AbstractContextManager[object]:
    """The instrumentation span of a save's append; nothing to build without a hook."""
    if not _instr._hooks:
        return _NO_OPERATION
    return _instr.operation(
        _instr.APPEND,
        aggregate_id=aggregate.id,
        aggregate_type=aggregate.type,
        command_id=command_id or "",
        event_count=count,
    )


A = TypeVar("A", bound=AggregateRoot)

#: Attribute a tenant-isolated repository sets on the aggregates it loads: their tenant.
_TENANT_TAG = "_es_tenant"


def _check_aggregate(where: str, aggregate: object) -> None:
    """What a save takes: an aggregate (an ``AggregateRoot``), not its id or None."""
    if not isinstance(aggregate, AggregateRoot):
        shown = f"{type(aggregate).__name__} {aggregate!r:.60}"
        raise TypeError(
            f"{where}: aggregate must be an AggregateRoot (one the repository loaded, or "
            f"made with its factory), got {shown}"
        )


def _load_threads(store: object) -> int:
    """The store's ``load_threads`` hint: an optional attribute, not part of the
    ``EventStore`` port, so a store that does not say gets the default."""
    threads = getattr(store, "load_threads", DEFAULT_WORKERS)
    return threads if isinstance(threads, int) and threads >= 1 else DEFAULT_WORKERS


class Repository(Generic[A]):
    """Loads aggregates by replaying their events and saves their new events.

    ``factory(id)`` makes an empty aggregate; ``event_types`` are the proto
    message classes of its events (or a registry of them).

    ``cache=N`` keeps the last ``N`` aggregates loaded or saved (an LRU, per
    repository; 0, the default, keeps none). A cached aggregate is brought up to
    date with the events stored after its cached version (one indexed read)
    before every use, so a load never returns a stale state; a version conflict
    evicts it. The cache keeps each aggregate's state as bytes (``snapshot_state``;
    a ``copy.deepcopy`` for aggregates without it) and every load restores a fresh
    object from them (``restore_snapshot``): nothing cached is handed out, so
    concurrent callers never share one. The cache never changes whether a save or a
    load succeeds: a state that cannot be copied (``snapshot_state`` or the deep copy
    raises) or restored is logged and not cached, and that aggregate is read from
    the store.
    The ``*_async`` methods give the same results and errors as the synchronous
    ones without blocking the event loop on the store.

    ``tenant_isolation=True`` shares one store between tenants: callers use
    plain ids, the repository stores ``<tenant>::<id>`` for the tenant of the
    request (``current_tenant()``), scopes command ids and unique values the
    same way, keys its cache by the stored id, and raises
    ``TenantMismatchError`` for an id containing ``::``, for an aggregate
    loaded in another tenant, and for any id when no tenant is set.
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
        cache: int = 0,
        tenant_isolation: bool = False,
    ) -> None:
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 0:
            raise ValueError(
                f"cache must be a whole number of aggregates to keep (0 keeps none), got {cache!r}"
            )
        self.cache_size = cache
        self.tenant_isolation = tenant_isolation
        # stored id -> (stored version, what is kept: see _frozen)
        self._cache: OrderedDict[str, tuple[int, tuple[bytes, int] | A]] = OrderedDict()
        self._cache_lock = threading.Lock()
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
        # The caller's registry itself, even empty: upcasters it registers later apply.
        self.upcasters = upcasters if upcasters is not None else Upcasters()
        self.snapshot_upcaster = snapshot_upcaster
        check_ttl("Repository", command_ttl)
        self.command_ttl = command_ttl
        # load_async's loads go to worker threads in batches (see offloop.py), as many
        # threads as the store says its loads usefully overlap on.
        self._off_loop = OffLoopCalls(_load_threads(store))

    # -- reading ---------------------------------------------------------------
    def decode(self, event: Event) -> Message:
        """The payload of a stored event as a message, after upcasting."""
        if self.upcasters:
            event = self.upcasters.upcast(event)
        return self.event_types.decode(event)

    def exists(self, aggregate_id: str) -> bool:
        """Whether ``aggregate_id`` has events stored as an aggregate of this repository.

        False for an id whose stream belongs to another aggregate type (its events were
        stored with another aggregate type, and this repository cannot decode them):
        ``load`` and ``save`` of that id raise ``AggregateTypeMismatchError``, naming it.
        """
        if type(aggregate_id) is str and not aggregate_id.isascii():
            self._check_id_text(aggregate_id)
        key = self.stored_id(aggregate_id)
        first = self.store.load_stream(key, after_version=0, up_to_version=1)
        if not first:
            return False
        event = first[0]
        if self._decodes(event):
            return True  # this type's events (or a renamed type's, which still decode)
        own = self._type_for(aggregate_id)
        return own is None or event.aggregate_type == own

    # -- aggregate types sharing one space of ids ----------------------------------
    def _decodes(self, event: Event) -> bool:
        """Whether this repository can decode ``event`` (its type, after upcasting, is
        registered); False only for an ``EventDecodeError``."""
        try:
            self.decode(event)
        except EventDecodeError:
            return False
        except Exception:
            return True  # an upcaster's own failure: not a sign of another type's event
        return True

    def _type_for(self, aggregate_id: str) -> str | None:
        """The aggregate type this repository makes for ``aggregate_id`` (None when the
        factory refuses the id)."""
        try:
            return self.factory(aggregate_id).type
        except Exception:
            return None

    def _other_type(self, key: str, own_type: str) -> str | None:
        """The aggregate type that holds stream ``key`` when it is not ``own_type``: its
        first event was stored with another aggregate type and does not decode here.
        None when the stream is empty, is this type's, or cannot be read.

        Only asked on an error path (an event that did not decode, a new aggregate's
        version conflict): loads and saves that succeed never read more for it.
        """
        try:
            first = self.store.load_stream(key, after_version=0, up_to_version=1)
        except Exception:
            return None  # the error that brought us here is the one to report
        if not first or first[0].aggregate_type == own_type or self._decodes(first[0]):
            return None
        return first[0].aggregate_type

    def _check_id_text(self, aggregate_id: str) -> None:
        """Refuse an id holding a lone surrogate: the stores cannot keep it as UTF-8."""
        problem = lone_surrogate(aggregate_id)
        if problem is not None:
            factory = self.factory
            kind = (
                getattr(factory, "aggregate_type", None) or factory.__name__
                if isinstance(factory, type)
                else ""
            )
            raise InvalidAggregateIdError(aggregate_id, kind or "", reason=problem)

    def event_log(self) -> Any:
        """The log as the request may read it: what a tenant-facing read goes through.

        With ``tenant_isolation`` it is ``TenantEventSource(store,
        current_tenant())``: only the request's tenant's events, and
        ``TenantMismatchError`` when no tenant is set (an unscoped read is the
        operator's, made on the store itself). Without isolation it is the store.
        """
        if not self.tenant_isolation:
            return self.store
        tenant = current_tenant()
        if not tenant:
            raise TenantMismatchError("", "", "no tenant is set to scope the log to")
        return TenantEventSource(self.store, tenant)

    # -- tenancy -----------------------------------------------------------------
    def stored_id(self, aggregate_id: str) -> str:
        """The id the store keeps ``aggregate_id``'s events and snapshots under, for code
        that reads the store beside the repository (time travel, ``%es_state``).

        With ``tenant_isolation`` it is ``<tenant>::<id>`` of ``current_tenant()``
        (``TenantMismatchError`` when no tenant is set, or the id holds ``::``, as
        ``load`` raises); otherwise the id itself.
        """
        return stored_id(aggregate_id) if self.tenant_isolation else aggregate_id

    def _stored_id_of(self, aggregate: A) -> str:
        """The stored id of ``aggregate``, refusing one loaded in another tenant."""
        if not self.tenant_isolation:
            return aggregate.id
        owner = getattr(aggregate, _TENANT_TAG, None)
        tenant = current_tenant()
        if owner is not None and owner != tenant:
            raise TenantMismatchError(
                aggregate.id, tenant, "it was loaded in another tenant's request"
            )
        return stored_id(aggregate.id)

    def _tagged(self, aggregate: A) -> A:
        if self.tenant_isolation:
            with contextlib.suppress(AttributeError):
                object.__setattr__(aggregate, _TENANT_TAG, current_tenant())
        return aggregate

    def _scoped(self, key: str | None) -> str | None:
        """A command id or unique value of this tenant, as the shared store keys it."""
        return scoped_key(key) if key and self.tenant_isolation else key

    def load(self, aggregate_id: str, at_version: int | None = None) -> A:
        """The aggregate as of its last version, or as of ``at_version``.

        With ``tenant_isolation`` the id is the tenant's own (plain) id; the
        stored one is ``<tenant>::<id>`` of ``current_tenant()``.
        """
        if not _instr._hooks:
            return self._load(aggregate_id, at_version)
        with _instr.operation(_instr.LOAD, aggregate_id=aggregate_id) as attributes:
            aggregate = self._load(aggregate_id, at_version)
            attributes["aggregate_type"] = aggregate.type
            attributes["version"] = aggregate.version
            return aggregate

    def _load(self, aggregate_id: str, at_version: int | None) -> A:
        if type(aggregate_id) is str and not aggregate_id.isascii():
            self._check_id_text(aggregate_id)
        key = self.stored_id(aggregate_id)
        if at_version is not None:
            at_version = self._checked_version(aggregate_id, at_version)
        elif self.cache_size:
            cached = self._cached_copy(key, aggregate_id)
            if cached is not None:
                return self._tagged(self._caught_up(cached))
        aggregate = self._tagged(self.factory(aggregate_id))
        snapshot = self._usable_snapshot(aggregate, at_version)
        if self.snapshot_store is not None and _instr._hooks:
            _instr.record(
                _instr.SNAPSHOT_HITS if snapshot is not None else _instr.SNAPSHOT_MISSES,
                aggregate_type=aggregate.type,
            )
        base = 0
        if snapshot is not None:  # its version is >= 1 (_usable_snapshot)
            aggregate.restore_snapshot(snapshot.data)
            base = snapshot.version
        try:
            last = self._replay_stored(aggregate, key, base, at_version)
        except EventDecodeError:
            # An event of another aggregate type under the same id? Then say so, not "register
            # the message class" (which would replay another type's events into this one).
            other = self._other_type(key, aggregate.type)
            if other is None:
                raise
            raise AggregateTypeMismatchError(aggregate.id, aggregate.type, other) from None
        if not last and snapshot is None:
            raise AggregateNotFoundError(aggregate_id, aggregate.type)
        version = last or base
        if at_version is not None and version < at_version:
            raise VersionNotFoundError(aggregate_id, at_version, version)
        aggregate.mark_restored(version, base)
        if self.cache_size and at_version is None:
            self._remember(aggregate)
        return aggregate

    async def load_async(self, aggregate_id: str, at_version: int | None = None) -> A:
        """``load`` on a worker thread, so the event loop does not wait on the store.

        Loads queued while others run share one thread hand-off (``OffLoopCalls``),
        in the caller's context; the answers are ``load``'s.
        """
        return await self._off_loop.call(self.load, aggregate_id, at_version)

    # -- the aggregate cache -----------------------------------------------------
    def _frozen(self, aggregate: A) -> tuple[bytes, int] | A:
        """What the cache keeps of ``aggregate``, sharing no mutable state with it: its
        state's bytes (``snapshot_state``; bytes never change), or a deep copy of an
        aggregate without snapshots.

        Bytes rather than a restored copy: a save (on the event loop, for ``async``
        callers) then pays one serialisation, and each load one restore, instead of a
        full copy (serialise and restore) on each side.
        """
        try:
            return (aggregate.snapshot_state(), aggregate.snapshot_version)
        except NotImplementedError:
            return copy.deepcopy(aggregate)

    def _thawed(self, aggregate_id: str, version: int, kept: tuple[bytes, int] | A) -> A:
        """A private copy of a cached aggregate, at its cached ``version``."""
        if not isinstance(kept, tuple):
            return copy.deepcopy(kept)
        state, snapshot_version = kept
        fresh = self.factory(aggregate_id)
        fresh.restore_snapshot(state)
        fresh.mark_restored(version, snapshot_version)
        return fresh

    def _cached_copy(self, key: str, aggregate_id: str) -> A | None:
        with self._cache_lock:
            held = self._cache.get(key)
            if held is None:
                return None
            self._cache.move_to_end(key)
        # What the cache keeps never changes: copying outside the lock is safe.
        try:
            return self._thawed(aggregate_id, *held)
        except Exception:
            # The cache is an optimisation: a copy that cannot be made is a miss.
            self._evict_key(key)
            log.exception(
                "cannot restore the cached copy of %r at version %d (restore_snapshot, or a "
                "deep copy, failed): loading it from the store instead",
                key,
                held[0],
            )
            return None

    def _caught_up(self, aggregate: A) -> A:
        """``aggregate`` (a private copy) with the events stored after its version applied."""
        key = self._stored_id_of(aggregate)
        if self._replay_stored(aggregate, key, aggregate.stored_version, None):
            self._remember(aggregate)
        return aggregate

    def _replay_stored(
        self, aggregate: A, key: str, after_version: int, up_to_version: int | None
    ) -> int:
        """Replay the stored events of ``key`` after ``after_version`` (up to
        ``up_to_version``) into ``aggregate``; the last version replayed, 0 for none."""
        reader = self._payload_reader()
        if reader is None or type(aggregate).replay is not AggregateRoot.replay:
            events = self.store.load_stream(
                key, after_version=after_version, up_to_version=up_to_version
            )
            decode = self.decode
            replay = aggregate.replay
            for event in events:
                replay(decode(event), event.version)
            return events[-1].version if events else 0
        # The same replay fused: (type, version, bytes) rows instead of Events, the
        # parser and handler of each type looked up once, and AggregateRoot.replay's
        # two steps inline (its version is set after each event, as there).
        rows = reader(key, after_version, up_to_version)
        handlers = aggregate.replay_handlers()
        apply_event = aggregate.apply_event
        set_attribute = object.__setattr__
        table: dict[str, tuple[Callable[[bytes], Message] | None, Callable[[Message], None]]] = {}
        version = 0
        for event_type, version, data in rows:
            entry = table.get(event_type)
            if entry is None:
                cls = self.event_types.get(event_type)
                entry = table[event_type] = (
                    None if cls is None else cls.FromString,
                    handlers.get(event_type, apply_event),
                )
            parse, apply = entry
            if parse is None:
                message = self._decode_stored(key, version)
            else:
                try:
                    message = parse(data)
                except DecodeError:
                    message = self._decode_stored(key, version)
            apply(message)
            set_attribute(aggregate, "_stored_version", version)
        return version

    def _payload_reader(self) -> Callable[[str, int, int | None], list[Any]] | None:
        """The store's ``load_stream_payloads`` when a replay may read through it: no
        upcasters (they take whole Events), the standard decoding, and a store whose
        ``load_stream`` is the one of the class that reads payloads (a wrapper or a
        subclass that changes ``load_stream`` is read through it)."""
        if (
            self.upcasters
            or type(self).decode is not Repository.decode
            or type(self.event_types).decode is not EventTypeRegistry.decode
        ):
            return None
        store = self.store
        if not _reads_payloads(type(store)) or "load_stream" in getattr(store, "__dict__", ()):
            return None
        return store.load_stream_payloads  # type: ignore[attr-defined, no-any-return]

    def _decode_stored(self, key: str, version: int) -> Message:
        """The stored event at ``version`` decoded from its whole ``Event``: the error
        (``EventDecodeError``, with its id and position) that a replay of Events raises."""
        (event,) = self.store.load_stream(key, after_version=version - 1, up_to_version=version)
        return self.decode(event)

    def _remember(self, aggregate: A) -> None:
        """Cache a copy of ``aggregate``'s stored state (it must have no pending events).

        Best effort: when the copy cannot be made (``snapshot_state`` or ``copy.deepcopy``
        raises), the error is logged and the aggregate is not cached, so its loads read
        the store; the save or load that called this still succeeds.
        """
        if aggregate.uncommitted_events:
            return
        version = aggregate.stored_version
        key = self._stored_id_of(aggregate)
        try:
            kept = self._frozen(aggregate)
        except Exception:
            self._evict_key(key)
            log.exception(
                "not caching %s %r at version %d: copying its state failed (a bug in "
                "snapshot_state, or an attribute copy.deepcopy cannot copy); it is loaded from "
                "the store instead. Fix snapshot_state, or use cache=0 for this aggregate type",
                aggregate.type,
                aggregate.id,
                version,
            )
            return
        self._keep(key, version, kept)

    def _keep(self, key: str, version: int, kept: tuple[bytes, int] | A) -> None:
        """Cache ``kept`` as ``key`` at ``version``, unless a newer version is cached."""
        with self._cache_lock:
            held = self._cache.get(key)
            if held is not None and held[0] > version:
                return  # a newer state is cached already
            self._cache[key] = (version, kept)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def evict(self, aggregate_id: str) -> None:
        """Drop ``aggregate_id`` from the cache (the repository does it on a version conflict)."""
        self._evict_key(self.stored_id(aggregate_id))

    def _evict_key(self, key: str) -> None:
        with self._cache_lock:
            self._cache.pop(key, None)

    @property
    def cached_ids(self) -> list[str]:
        """The ids in the cache, least recently used first."""
        with self._cache_lock:
            return list(self._cache)

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
        snapshot = self.snapshot_store.latest_snapshot(self._stored_id_of(aggregate), at_version)
        if snapshot is None:
            return None
        if snapshot.version < 1:
            # Stored before stores refused them: the state before any event, which would
            # make a load of an aggregate without events return one.
            log.info("ignoring snapshot of %r at version %d", aggregate.id, snapshot.version)
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
    def save(
        self,
        aggregate: A,
        metadata: EventMetadata | None = None,
        *,
        unit: UnitOfWork | None = None,
    ) -> CommandResult:
        """Save ``aggregate``'s pending events; with ``unit=``, join that ``UnitOfWork``
        instead: nothing is written until the unit commits (then with the unit's command
        id), and the result returned here is empty."""
        _check_aggregate("Repository.save", aggregate)
        check_metadata("Repository.save", metadata)
        if unit is not None:
            unit.save(aggregate, self, metadata)
            return CommandResult(unit.command_id or "", ())
        return self._save(aggregate, None, metadata)

    def unit_committed(self, aggregate: A, result: UnitResult) -> None:
        """Called by a ``UnitOfWork`` after it committed: as a save of ``aggregate`` ends."""
        if result.already_processed:
            self.evict(aggregate.id)
            self._reload_in_place(aggregate)
            return
        own = result[self._stored_id_of(aggregate)]
        self._committed(aggregate, own)
        if own.events:
            self._maybe_snapshot(aggregate)

    def save_with_command(
        self, aggregate: A, command_id: str, metadata: EventMetadata | None = None
    ) -> CommandResult:
        """Save under ``command_id``: a command seen before returns its original result.

        Then nothing is written, and ``aggregate`` is brought to its stored state in
        place: the events applied for this run are dropped (they were stored by the
        first run, or the command decided otherwise then), so the next command on the
        object starts from what the store holds.
        """
        _check_aggregate("save_with_command", aggregate)
        check_command_id("save_with_command", command_id)
        check_metadata("save_with_command", metadata)
        return self._save(aggregate, command_id, metadata)

    async def save_async(
        self, aggregate: A, metadata: EventMetadata | None = None
    ) -> CommandResult:
        """``save`` for ``async`` code: the same result and errors; the loop never waits on
        the store (``EventStore.append_async``)."""
        _check_aggregate("Repository.save_async", aggregate)
        check_metadata("Repository.save_async", metadata)
        return await self._save_async(aggregate, None, metadata)

    async def save_with_command_async(
        self, aggregate: A, command_id: str, metadata: EventMetadata | None = None
    ) -> CommandResult:
        """``save_with_command`` for ``async`` code: the same result and errors."""
        _check_aggregate("save_with_command_async", aggregate)
        check_command_id("save_with_command_async", command_id)
        check_metadata("save_with_command_async", metadata)
        return await self._save_async(aggregate, command_id, metadata)

    def _save(
        self, aggregate: A, command_id: str | None, metadata: EventMetadata | None
    ) -> CommandResult:
        key = self._stored_id_of(aggregate)
        new_events = self._new_events(aggregate, key, command_id, metadata)
        if new_events is None:
            return CommandResult("", ())
        try:
            with _append_operation(aggregate, command_id, len(new_events)):
                result = self.store.append(
                    key,
                    aggregate.type,
                    aggregate.stored_version,
                    new_events,
                    command_id=self._scoped(command_id),
                    command_ttl=self.command_ttl,
                )
        except ConcurrencyError as exc:
            self._evict_key(key)
            if exc.expected == 0:  # a new aggregate whose id is taken: by another type?
                other = self._other_type(key, aggregate.type)
                if other is not None:
                    raise AggregateTypeMismatchError(aggregate.id, aggregate.type, other) from None
            if self.tenant_isolation:
                raise self._own_conflict(exc) from None
            raise
        except UniqueConstraintError as exc:
            raise self._own_constraint_error(exc) from None
        except CommandIdConflictError as exc:
            raise self._own_command_conflict(exc) from None
        if result.already_processed:
            self._evict_key(key)
            self._reload_in_place(aggregate)
            return self._command_result(command_id or "", result)
        self._committed(aggregate, result)
        if result.events:
            self._maybe_snapshot(aggregate)
        return self._command_result(command_id or "", result)

    async def _save_async(
        self, aggregate: A, command_id: str | None, metadata: EventMetadata | None
    ) -> CommandResult:
        key = self._stored_id_of(aggregate)
        new_events = self._new_events(aggregate, key, command_id, metadata)
        if new_events is None:
            return CommandResult("", ())
        try:
            with _append_operation(aggregate, command_id, len(new_events)):
                result = await store_append_async(self.store)(
                    key,
                    aggregate.type,
                    aggregate.stored_version,
                    new_events,
                    command_id=self._scoped(command_id),
                    command_ttl=self.command_ttl,
                )
        except ConcurrencyError as exc:
            self._evict_key(key)
            if exc.expected == 0:  # as in _save
                other = await asyncio.to_thread(self._other_type, key, aggregate.type)
                if other is not None:
                    raise AggregateTypeMismatchError(aggregate.id, aggregate.type, other) from None
            if self.tenant_isolation:
                raise self._own_conflict(exc) from None
            raise
        except UniqueConstraintError as exc:
            raise self._own_constraint_error(exc) from None
        except CommandIdConflictError as exc:
            raise self._own_command_conflict(exc) from None
        if result.already_processed:
            self._evict_key(key)
            await asyncio.to_thread(self._reload_in_place, aggregate)
            return self._command_result(command_id or "", result)
        self._committed(aggregate, result)
        if result.events and self.snapshot_strategy is not None:
            await asyncio.to_thread(self._maybe_snapshot, aggregate)
        return self._command_result(command_id or "", result)

    def _own_conflict(self, exc: ConcurrencyError) -> ConcurrencyError:
        """The conflict as the caller named the aggregate: its plain id, not the stored
        ``<tenant>::<id>`` (the id the caller sent is the one it resends)."""
        return ConcurrencyError(split_stored_id(exc.aggregate_id)[1], exc.expected, exc.actual)

    def _own_command_conflict(self, exc: CommandIdConflictError) -> CommandIdConflictError:
        """The conflict in the ids the caller sent (its command id, its aggregate's plain
        id), not the stored ``<tenant>::<id>`` forms."""
        if not self.tenant_isolation:
            return exc
        return CommandIdConflictError(
            split_stored_id(exc.command_id)[1], split_stored_id(exc.aggregate_id)[1]
        )

    def _find_command(self, command_id: str, aggregate_id: str) -> AppendResult | None:
        """The stored result of ``command_id`` run on ``aggregate_id`` (plain ids)."""
        try:
            return self.store.find_command(
                self._scoped(command_id) or "", self.stored_id(aggregate_id)
            )
        except CommandIdConflictError as exc:
            raise self._own_command_conflict(exc) from None

    def _own_constraint_error(self, exc: UniqueConstraintError) -> UniqueConstraintError:
        """The error with the tenant's own value and no owner id: the message may reach a
        client, which must not learn which aggregate holds a value (an e-mail's account).
        That an owner exists is kept (``owner_hidden``), so a release says "another
        aggregate owns it", not "nobody has claimed it"."""
        if not self.tenant_isolation:
            return exc
        value = split_stored_id(exc.value)[1]
        requester = split_stored_id(exc.requester)[1]
        return type(exc)(exc.index, value, None, requester, owner_hidden=exc.owner is not None)

    def _new_events(
        self, aggregate: A, key: str, command_id: str | None, metadata: EventMetadata | None
    ) -> list[NewEvent] | None:
        """The pending events as ``NewEvent`` s; None when there is nothing to send."""
        pending = aggregate.uncommitted_events
        if command_id is None and not pending:
            return None
        base = EventMetadata(causation_id=command_id or "").merged(metadata)
        scoped = self._scoped_constraints if self.tenant_isolation else _unchanged
        # Ids from the command id the store keys (per tenant), so that the store can
        # recognise a retry by them once the command's record has expired.
        stored_command = self._scoped(command_id)
        return [
            NewEvent(
                deterministic_event_id(stored_command, key, index)
                if stored_command
                else new_event_id(),
                p.message.DESCRIPTOR.full_name,
                p.message.SerializeToString(),
                base.merged(p.metadata),
                scoped(p.constraints),
            )
            for index, p in enumerate(pending)
        ]

    def _scoped_constraints(
        self, constraints: tuple[UniqueConstraint, ...]
    ) -> tuple[UniqueConstraint, ...]:
        if not self.tenant_isolation or not constraints:
            return constraints
        return tuple(UniqueConstraint(c.index, scoped_key(c.value), c.op) for c in constraints)

    def _committed(self, aggregate: A, result: AppendResult) -> None:
        if result.events:
            if _instr._hooks:
                _instr.record(
                    _instr.EVENTS_APPENDED, len(result.events), aggregate_type=aggregate.type
                )
            aggregate.mark_committed(result.events[-1].version)
            if self.cache_size:
                self._remember(aggregate)

    def _reload_in_place(self, aggregate: A) -> None:
        """Drop ``aggregate``'s pending events and replay its stored state into the same object."""
        try:
            fresh = self.load(aggregate.id)
        except AggregateNotFoundError:
            fresh = self.factory(aggregate.id)
        aggregate.reset_to(fresh)
        self._tagged(aggregate)

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
        _check_aggregate("save_snapshot", aggregate)
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
        if aggregate.version < 1:
            raise ValueError(
                f"cannot snapshot aggregate {aggregate.id!r}: it has no stored events (version "
                "0), so there is no state to snapshot. Save its first events, then snapshot it"
            )
        with _instr.operation(
            _instr.SNAPSHOT,
            aggregate_id=aggregate.id,
            aggregate_type=aggregate.type,
            version=aggregate.version,
        ):
            return self._save_snapshot(aggregate)

    def _save_snapshot(self, aggregate: A) -> Snapshot:
        assert self.snapshot_store is not None  # checked by save_snapshot
        key = self._stored_id_of(aggregate)
        snapshot = Snapshot(
            key,
            aggregate.type,
            aggregate.version,
            aggregate.schema_key,
            aggregate.snapshot_state(),
        )
        self.snapshot_store.save_snapshot(snapshot)
        aggregate.mark_snapshotted(aggregate.version)
        if self.cache_size:
            # The cached copy gets the new snapshot version too, or each load from the cache
            # would count the events since the previous one (and snapshot on every save).
            self._keep(key, snapshot.version, (snapshot.data, snapshot.version))
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
        check_count("attempts", attempts)
        for attempt in range(1, attempts + 1):
            try:
                aggregate = self.load(aggregate_id)
            except AggregateNotFoundError:
                aggregate = self.factory(aggregate_id)
            # Look the command up after loading: a run of it committed before the load
            # is found here, one committed after it is found by the append's own check.
            # Looking first would let fn see a state the command already changed.
            if command_id:
                known = self._find_command(command_id, aggregate_id)
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

    async def retry_on_conflict_async(
        self,
        aggregate_id: str,
        fn: Callable[[A], object],
        *,
        command_id: str | None = None,
        metadata: EventMetadata | None = None,
        attempts: int = 5,
        backoff: float = 0.005,
    ) -> CommandResult:
        """``retry_on_conflict`` for ``async`` code; ``fn`` may be plain or ``async``.

        Loads and command look-ups run on a worker thread, the save through
        ``append_async``, the backoff with ``asyncio.sleep``: the loop never blocks.
        """
        check_command_id("retry_on_conflict_async", command_id, optional=True)
        check_metadata("retry_on_conflict_async", metadata)
        check_count("attempts", attempts)
        for attempt in range(1, attempts + 1):
            aggregate, known = await asyncio.to_thread(
                self._load_for_retry, aggregate_id, command_id
            )
            if known is not None:
                return self._command_result(command_id or "", known)
            outcome = fn(aggregate)
            if inspect.isawaitable(outcome):
                await outcome
            try:
                return await self._save_async(aggregate, command_id, metadata)
            except ConcurrencyError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _load_for_retry(
        self, aggregate_id: str, command_id: str | None
    ) -> tuple[A, AppendResult | None]:
        try:
            aggregate = self.load(aggregate_id)
        except AggregateNotFoundError:
            aggregate = self.factory(aggregate_id)
        # As in retry_on_conflict: look the command up after loading.
        known = self._find_command(command_id, aggregate_id) if command_id else None
        return aggregate, known
