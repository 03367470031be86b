"""The aggregate root: state that changes only by applying events.

Raising an event applies it at once (DESIGN decision 3): ``apply_change``
calls ``apply_event`` first and records the event only if that succeeded, so
the state a command handler sees after raising is the state that will be
stored. The id is given at construction and never read from state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from google.protobuf.message import Message

from .arguments import check_metadata
from .constraints import UniqueConstraint
from .errors import InvalidAggregateIdError
from .events import EventMetadata

_NO_HANDLERS: Mapping[str, Callable[[Message], None]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event applied to an aggregate and not yet stored."""

    message: Message
    metadata: EventMetadata | None = None
    constraints: tuple[UniqueConstraint, ...] = ()

    @property
    def event_type(self) -> str:
        return self.message.DESCRIPTOR.full_name


class AggregateRoot:
    """Base class of aggregates.

    Subclasses implement ``apply_event`` (and, to support snapshots,
    ``snapshot_state``/``restore_snapshot`` with a ``schema_key``). Generated
    aggregates do all of this from the proto.
    """

    #: Default aggregate type for instances made without an explicit one.
    aggregate_type: ClassVar[str] = ""
    #: Identifies the shape of the snapshot state; snapshots of another key are ignored.
    schema_key: ClassVar[str] = ""

    def __init__(self, aggregate_id: str, aggregate_type: str | None = None) -> None:
        kind = aggregate_type or self.aggregate_type or type(self).__name__
        if not isinstance(aggregate_id, str) or not aggregate_id:
            # Usually a request's unset id field: InvalidAggregateIdError is the
            # request's fault (INVALID_ARGUMENT on a wire), not a bug (INTERNAL).
            id_field = getattr(type(self), "id_field", "")
            raise InvalidAggregateIdError(
                aggregate_id, kind, id_field if isinstance(id_field, str) else ""
            )
        object.__setattr__(self, "_id", aggregate_id)
        object.__setattr__(self, "_type", kind)
        object.__setattr__(self, "_stored_version", 0)
        object.__setattr__(self, "_snapshot_version", 0)
        object.__setattr__(self, "_uncommitted", [])

    # -- identity and version ------------------------------------------------
    @property
    def id(self) -> str:
        return self._id  # type: ignore[no-any-return, attr-defined]

    @property
    def type(self) -> str:
        return self._type  # type: ignore[no-any-return, attr-defined]

    @property
    def version(self) -> int:
        """Stored version plus the events applied since (a new aggregate with one event: 1)."""
        return self._stored_version + len(self._uncommitted)  # type: ignore[attr-defined]

    @property
    def stored_version(self) -> int:
        """The version the store holds; the expected version of the next save."""
        return self._stored_version  # type: ignore[no-any-return, attr-defined]

    @property
    def snapshot_version(self) -> int:
        """Version of the snapshot this aggregate was loaded from or last saved to (0: none)."""
        return self._snapshot_version  # type: ignore[no-any-return, attr-defined]

    @property
    def uncommitted_events(self) -> tuple[PendingEvent, ...]:
        return tuple(self._uncommitted)  # type: ignore[attr-defined]

    # -- changing state --------------------------------------------------------
    def apply_change(
        self,
        event: Message,
        metadata: EventMetadata | None = None,
        constraints: Sequence[UniqueConstraint] = (),
    ) -> None:
        """Apply ``event`` to the state now and record it for the next save."""
        if not isinstance(event, Message):
            raise TypeError(
                f"apply_change expects a protobuf message, got {type(event).__name__}; "
                "events are proto messages"
            )
        check_metadata("apply_change", metadata)
        constraints = tuple(constraints)
        for constraint in constraints:
            if not isinstance(constraint, UniqueConstraint):
                raise TypeError(
                    "apply_change: constraints must be UniqueConstraint objects, got "
                    f"{type(constraint).__name__} {constraint!r:.60}. Build them with "
                    "UniqueConstraint(index, value) or UniqueConstraint.release(index, value)."
                )
        self.apply_event(event)
        self._uncommitted.append(  # type: ignore[attr-defined]
            PendingEvent(event, metadata, constraints)
        )

    def apply_event(self, event: Message) -> None:
        """Change the state for ``event``. Must not fail for events already stored."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement apply_event(event); "
            "override it to change the aggregate's state for each event type"
        )

    # -- snapshots -------------------------------------------------------------
    def snapshot_state(self) -> bytes:
        raise NotImplementedError(
            f"{type(self).__name__} cannot be snapshotted: implement snapshot_state() "
            "and restore_snapshot(data), and set schema_key"
        )

    def restore_snapshot(self, data: bytes) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} cannot be restored from a snapshot: implement "
            "restore_snapshot(data)"
        )

    # -- used by the repository ------------------------------------------------
    def replay(self, event: Message, version: int) -> None:
        """Apply a stored event during load (not recorded as uncommitted)."""
        self.apply_event(event)
        object.__setattr__(self, "_stored_version", version)

    def replay_handlers(self) -> Mapping[str, Callable[[Message], None]]:
        """What applies each event type during a replay, by proto full name, where that
        is not ``apply_event`` itself (the default, empty, means ``apply_event`` for all).

        A replay calls the handler of the stored type directly instead of
        ``apply_event``, which must then do exactly what the handler does: a
        generated aggregate hands out its applier's bound methods, saving a
        dispatch per event replayed.
        """
        return _NO_HANDLERS

    def mark_restored(self, version: int, snapshot_version: int = 0) -> None:
        object.__setattr__(self, "_stored_version", version)
        object.__setattr__(self, "_snapshot_version", snapshot_version)

    def mark_committed(self, version: int) -> None:
        """Forget the uncommitted events: the store now holds them up to ``version``."""
        self._uncommitted.clear()  # type: ignore[attr-defined]
        object.__setattr__(self, "_stored_version", version)

    def reset_to(self, other: AggregateRoot) -> None:
        """Become ``other`` in place: its state, versions and (no) pending events.

        The repository reloads an aggregate this way after an "already processed"
        answer, so that code holding the object sees the stored state.
        """
        if type(other) is not type(self):
            raise TypeError(
                f"cannot reset {self!r} to {other!r}: the other object must be of class "
                f"{type(self).__name__} too"
            )
        if other.id != self.id:
            raise ValueError(
                f"cannot reset {self!r} to {other!r}: it is another aggregate; load "
                f"{self.id!r} to reset to its stored state"
            )
        attributes = vars(self)
        attributes.clear()
        attributes.update(vars(other))
        for cls in type(self).__mro__:
            slots = getattr(cls, "__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name not in ("__dict__", "__weakref__") and hasattr(other, name):
                    object.__setattr__(self, name, getattr(other, name))
        object.__setattr__(self, "_uncommitted", list(other._uncommitted))  # type: ignore[attr-defined]

    def mark_snapshotted(self, version: int) -> None:
        object.__setattr__(self, "_snapshot_version", version)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type} id={self.id!r} version={self.version}>"
