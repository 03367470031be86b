"""What generated code imports (as ``_es``): its base classes and the core names it uses.

Generated modules stay short and declarative; the behaviour they share (event
dispatch, state forwarding checks, projection dispatch, routing, client calls)
lives here once and is tested once.
"""

from __future__ import annotations

import functools
import inspect
import logging
import weakref
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    MutableMapping,
    MutableSequence,
    Sequence,
)
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from ..core.aggregate import AggregateRoot
from ..core.errors import AppError
from ..core.event_types import EventTypeRegistry
from ..core.events import Event, EventMetadata
from ..core.ids import new_command_id
from ..core.ports import EventStore, SnapshotStore
from ..core.process_managers import Process, ProcessManager
from ..core.projection import ProjectionContext
from ..core.repository import Repository
from ..core.snapshots import EveryNEvents, SnapshotStrategy, SnapshotUpcaster
from ..core.transport import (
    COMMAND_ID_HEADER,
    RequestContext,
    Route,
    Transport,
    metadata_headers,
)
from ..core.upcasting import Upcasters

__all__ = [
    "AggregateRoot",
    "AppError",
    "Event",
    "EventHandler",
    "EventMetadata",
    "EventStore",
    "EventTypeRegistry",
    "EveryNEvents",
    "GeneratedAggregate",
    "GeneratedProcessManager",
    "MappingProxyType",
    "Message",
    "Process",
    "ProjectionBuilder",
    "ProjectionContext",
    "Repository",
    "RequestContext",
    "Route",
    "ServiceClient",
    "ServiceServer",
    "SnapshotStore",
    "SnapshotStrategy",
    "SnapshotUpcaster",
    "Transport",
    "Upcasters",
    "route",
    "set_map",
    "set_repeated",
]

log = logging.getLogger("eventstore.projections")

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=Message)
E = TypeVar("E", bound=Message)

EventHandler = Callable[[E, Event], object] | Callable[[E, Event, ProjectionContext], object]
"""A projection handler: ``(event, envelope)`` or ``(event, envelope, ctx)``."""


class GeneratedAggregate(AggregateRoot):
    """Base of generated ``<Type>Aggregate`` classes.

    The state is a proto message (``state``); its fields are attributes of the
    aggregate (properties written by the generator). Setting any other
    attribute fails, because only the state is stored in snapshots: a typo
    like ``agg.balanse = 5`` would otherwise be lost silently.
    """

    state_type: ClassVar[type[Message]]
    id_field: ClassVar[str] = ""
    event_appliers: ClassVar[Mapping[str, str]] = {}
    state_fields: ClassVar[frozenset[str]] = frozenset()
    applier_protocol: ClassVar[str] = ""

    state: Message
    applier: Any

    def __init__(self, aggregate_id: str, applier: object) -> None:
        super().__init__(aggregate_id)
        _check_applier(type(self), applier)
        state = self.state_type()
        if self.id_field:
            setattr(state, self.id_field, aggregate_id)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "applier", applier)

    def apply_event(self, event: Message) -> None:
        method = self.event_appliers.get(event.DESCRIPTOR.full_name)
        if method is None:
            known = ", ".join(self.event_appliers) or "none"
            raise TypeError(
                f"{type(self).__name__} cannot apply a {event.DESCRIPTOR.full_name}: it is not "
                f"an event of {self.aggregate_type} (its events: {known}). Mark the message "
                f"with option (eventsourcing.event).aggregate_name = {self.aggregate_type!r}."
            )
        getattr(self.applier, method)(self, event)

    def replay_handlers(self) -> Mapping[str, Callable[[Message], None]]:
        """The applier's methods by event type, bound to this aggregate: a replay calls
        them without ``apply_event``'s look-ups per event. None of them when a subclass
        replaces ``apply_event`` (then a replay calls that)."""
        if type(self).apply_event is not GeneratedAggregate.apply_event:
            return super().replay_handlers()
        applier = self.applier
        return {
            name: functools.partial(getattr(applier, method), self)
            for name, method in self.event_appliers.items()
        }

    def snapshot_state(self) -> bytes:
        return self.state.SerializeToString(deterministic=True)

    def restore_snapshot(self, data: bytes) -> None:
        object.__setattr__(self, "state", self.state_type.FromString(data))

    def __setattr__(self, name: str, value: object) -> None:
        if name in self.state_fields:
            object.__setattr__(self, name, value)
        elif name == "state":
            expected = self.state_type.DESCRIPTOR.full_name
            if not isinstance(value, Message) or value.DESCRIPTOR.full_name != expected:
                got = (
                    f"a {value.DESCRIPTOR.full_name} message"
                    if isinstance(value, Message)
                    else f"{type(value).__name__} {value!r:.60}"
                )
                raise TypeError(
                    f"{type(self).__name__}.state must be a {expected} message, got {got}. "
                    f"Assign a {expected} message (build one with "
                    f"{type(self).__name__}.state_type(...)), or set fields through the "
                    "aggregate's attributes."
                )
            if not isinstance(value, self.state_type):
                value = self.state_type.FromString(value.SerializeToString())
            object.__setattr__(self, name, value)
        else:
            fields = ", ".join(sorted(self.state_fields)) or "none"
            raise AttributeError(
                f"{type(self).__name__} has no state field {name!r} (fields: {fields}). "
                f"State lives in the {self.state_type.DESCRIPTOR.full_name} message: add the "
                "field to the proto, or fix the name."
            )


def _check_applier(cls: type[GeneratedAggregate], applier: object) -> None:
    # The applier types that passed are remembered on the class itself, weakly: a
    # module-level cache would keep every generation of a re-run notebook cell alive.
    checked: weakref.WeakSet[type] | None = cls.__dict__.get("_checked_appliers")
    if checked is None:
        checked = weakref.WeakSet()
        cls._checked_appliers = checked  # type: ignore[attr-defined]
    if type(applier) in checked:
        return
    missing = [m for m in cls.event_appliers.values() if not callable(getattr(applier, m, None))]
    if missing:
        raise TypeError(
            f"{type(applier).__name__} cannot apply {cls.aggregate_type} events: it lacks "
            f"{', '.join(missing)}. Implement every method of {cls.applier_protocol}."
        )
    checked.add(type(applier))


def set_repeated(target: MutableSequence[Any], value: Iterable[Any]) -> None:
    """Replace a repeated field's items (``agg.tags = [...]``)."""
    if value is target:
        return
    items = list(value)
    del target[:]
    if items and isinstance(items[0], Message):
        for item in items:
            target.add().CopyFrom(item)  # type: ignore[attr-defined]
    else:
        target.extend(items)


def set_map(target: MutableMapping[Any, Any], value: Mapping[Any, Any]) -> None:
    """Replace a map field's entries (``agg.limits = {...}``)."""
    if value is target:
        return
    items = dict(value)
    target.clear()
    for key, item in items.items():
        if isinstance(item, Message):
            target[key].CopyFrom(item)
        else:
            target[key] = item


def route(
    subject: str,
    request_type: type[Req],
    response_type: type[Rep],
    handler: Callable[[Req, RequestContext], Rep | Awaitable[Rep]],
) -> Route:
    """A typed route (the handler's request type is checked before it is called)."""
    return Route(subject, request_type, response_type, handler)  # type: ignore[arg-type]


class ServiceServer:
    """Base of generated ``<Service>Server`` bindings: the routes of one service."""

    service: ClassVar[str] = ""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = tuple(routes)

    @property
    def routes(self) -> Sequence[Route]:
        return self._routes

    @property
    def subjects(self) -> list[str]:
        return [r.subject for r in self._routes]


class ServiceClient:
    """Base of generated ``<Type>Client`` classes: typed calls over any transport.

    Every call carries a command id (a new one unless given), so a caller that
    retries after a timeout passes the same id and the command is applied once.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def _call(
        self,
        subject: str,
        request: Message,
        response_type: type[Rep],
        command_id: str | None,
        metadata: EventMetadata | Mapping[str, str] | None,
    ) -> Rep:
        headers = metadata_headers(metadata)
        headers[COMMAND_ID_HEADER] = command_id or new_command_id()
        response = await self.transport.request(subject, request, headers)
        return response.unwrap(response_type)


class ProjectionBuilder:
    """Base of generated ``<Type>ProjectionBuilder`` classes.

    ``on_<event>(handler)`` registers a handler and returns the builder, so
    calls chain; as a decorator it registers the function (the decorated name
    then refers to the builder: name the function ``_``). ``build()`` returns
    a ``Projection`` for the projection runner. With ``upcasters`` (the ones
    the aggregate's repository uses) the projection sees every event upcast,
    and the runner also reads the stored types that upcast into its events.
    """

    event_types: ClassVar[EventTypeRegistry] = EventTypeRegistry()

    def __init__(self, name: str, *, upcasters: Upcasters | None = None) -> None:
        if not name:
            raise ValueError("a projection needs a name (its checkpoint is kept under it)")
        self.name = name
        self.upcasters = upcasters
        self._handlers: dict[str, tuple[Callable[..., object], bool]] = {}
        self._reset: Callable[[ProjectionContext], object] | None = None

    def _on(self, event_type: str, handler: Callable[..., object]) -> Self:
        if not callable(handler):
            raise TypeError(f"the handler of {event_type} must be callable, got {handler!r}")
        if event_type in self._handlers:
            raise ValueError(
                f"projection {self.name!r} already has a handler for {event_type}; "
                "register one handler per event type"
            )
        self._handlers[event_type] = (handler, _takes_context(handler))
        return self

    def on_reset(self, handler: Callable[[ProjectionContext], object]) -> Self:
        """Register what forgets the read model before a rebuild."""
        self._reset = handler
        return self

    def build(self) -> BuiltProjection:
        return BuiltProjection(
            self.name,
            self.event_types,
            dict(self._handlers),
            self._reset,
            upcasters=self.upcasters,
        )


def _takes_context(handler: Callable[..., object]) -> bool:
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


class BuiltProjection:
    """A projection made by a builder: upcasts and decodes each event and calls its handler.

    ``event_types`` lists the types it handles, so a runner can ask the store
    for those only (and for the stored types that ``upcasters`` turn into
    them). An event it has no handler for is counted in ``unhandled`` (by
    type, shown in the runner's status) and logged once per type.
    """

    def __init__(
        self,
        name: str,
        registry: EventTypeRegistry,
        handlers: dict[str, tuple[Callable[..., object], bool]],
        reset: Callable[[ProjectionContext], object] | None,
        *,
        upcasters: Upcasters | None = None,
    ) -> None:
        self.name = name
        self._registry = registry
        self._handlers = handlers
        self._reset = reset
        self.event_types: tuple[str, ...] = tuple(handlers)
        self.upcasters = upcasters
        self.unhandled: dict[str, int] = {}
        # The last position counted: a batch rolled back and handled again (a later event
        # failed) feeds its events again, and each is counted once.
        self._counted_to = 0

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        if self.upcasters:
            event = self.upcasters.upcast(event)  # a no-op on an event upcast already
        entry = self._handlers.get(event.event_type)
        if entry is None:
            if event.position and event.position <= self._counted_to:
                return  # counted when first fed (its batch was rolled back since)
            self._counted_to = max(self._counted_to, event.position)
            count = self.unhandled.get(event.event_type, 0)
            self.unhandled[event.event_type] = count + 1
            if not count:
                log.warning(
                    "projection %r has no handler for %s events (position %d): counted in its "
                    "status and skipped. Register one with its on_<event> method, or an "
                    "upcaster into a type it handles.",
                    self.name,
                    event.event_type,
                    event.position,
                )
            return
        handler, takes_context = entry
        message = self._registry.decode(event)
        if takes_context:
            handler(message, event, ctx)
        else:
            handler(message, event)

    def reset(self, ctx: ProjectionContext) -> None:
        if self._reset is not None:
            self._reset(ctx)
        self.unhandled.clear()  # a rebuild counts the log's events again
        self._counted_to = 0

    def __repr__(self) -> str:
        return f"<projection {self.name!r} on {', '.join(self.event_types) or 'no events'}>"


class GeneratedProcessManager(ProcessManager):
    """Base of generated ``<Name>ProcessManager`` classes: a typed face on ``ProcessManager``.

    The state is a proto message (``state_type``), kept in the process's JSON
    state as its JSON mapping, so it is what the runner stores with its
    checkpoint. ``react`` decodes the state, calls the handler of the event's
    type (``event_handlers``: full name -> method), and stores the state back;
    ``on_timeout`` and ``on_rejected`` get the state the same way. A subclass
    defines every handler: one left out is an error when the manager is made,
    not a silently ignored event.
    """

    state_type: ClassVar[type[Message]]
    event_handlers: ClassVar[Mapping[str, str]] = {}

    def __init__(self) -> None:
        super().__init__()
        generated = next(c for c in type(self).__mro__ if "event_handlers" in c.__dict__)
        missing = [
            m
            for m in self.event_handlers.values()
            if getattr(type(self), m, None) is generated.__dict__.get(m)
        ]
        if missing:
            raise TypeError(
                f"{type(self).__name__} does not define {', '.join(missing)}: a subclass of "
                f"{generated.__name__} defines a handler for every event it reacts to (the "
                "process_manager option's events)"
            )

    def state_of(self, process: Process) -> Any:
        """The process's state as a ``state_type`` message (a new one when it has none)."""
        return self.decode_state(process.state)

    @classmethod
    def decode_state(cls, state: Mapping[str, Any] | None) -> Any:
        """A stored state (``ProcessRunner.state(process_id)``) as a ``state_type`` message."""
        return json_format.ParseDict(
            dict(state or {}), cls.state_type(), ignore_unknown_fields=True
        )

    def keep_state(self, process: Process, state: Message) -> None:
        """Store ``state`` as the process's state (its JSON mapping; defaults left out)."""
        process.state.clear()
        process.state.update(json_format.MessageToDict(state, preserving_proto_field_name=True))

    def react(self, process: Process, event: Event, message: Message) -> None:
        method = self.event_handlers.get(message.DESCRIPTOR.full_name)
        if method is None:
            return  # an upcaster produced a type it does not react to
        state = self.state_of(process)
        getattr(self, method)(process, state, message, event)
        self.keep_state(process, state)

    def timed_out(self, process: Process, step: str) -> None:
        state = self.state_of(process)
        self.on_timeout(process, state, step)
        self.keep_state(process, state)

    def rejected(self, process: Process, step: str, error: AppError) -> None:
        state = self.state_of(process)
        self.on_rejected(process, state, step, error)
        self.keep_state(process, state)

    def on_timeout(self, process: Process, state: Any, step: str) -> None:
        """A timeout armed with ``process.schedule`` fired; the default does nothing."""

    def on_rejected(self, process: Process, state: Any, step: str, error: AppError) -> None:
        """The command of ``step`` was refused with ``error``; the default does nothing."""
