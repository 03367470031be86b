"""Event upcasters: turn stored events of an old shape into the current one on load.

Registered per stored event type; an upcaster may change the type (``v1`` to
``v2``), and upcasters chain until no upcaster is registered for the result.
The stored log is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .events import Event

EventUpcaster = Callable[[Event], Event]

_MAX_CHAIN = 32


class Upcasters:
    """The upcasters of an application, by the stored event type each one reads.

    Give ``to=`` (the type an upcaster produces) when registering: readers
    that filter by type in the store (projections, followers) then read
    exactly the stored types that become the ones they want. An upcaster
    without ``to`` may produce anything, so such readers read its stored type
    whatever they want, and drop what does not become a wanted type.
    """

    def __init__(self) -> None:
        self._by_type: dict[str, EventUpcaster] = {}
        self._targets: dict[str, str | None] = {}

    def register(  # type: ignore[no-untyped-def]
        self, event_type: str, upcaster: EventUpcaster | None = None, *, to: str | None = None
    ):
        """Register ``upcaster`` for ``event_type`` (producing ``to``); usable as a decorator."""

        def add(fn: EventUpcaster) -> EventUpcaster:
            if event_type in self._by_type:
                raise ValueError(
                    f"an upcaster for event type {event_type!r} is already registered; "
                    "register one upcaster per stored type and chain them through types"
                )
            self._by_type[event_type] = fn
            self._targets[event_type] = to
            return fn

        return add(upcaster) if upcaster is not None else add

    def __bool__(self) -> bool:
        return bool(self._by_type)

    def upcast(self, event: Event) -> Event:
        for _ in range(_MAX_CHAIN):
            fn = self._by_type.get(event.event_type)
            if fn is None:
                return event
            source = event.event_type
            event = fn(event)
            declared = self._targets[source]
            if declared is not None and event.event_type != declared:
                raise TypeError(
                    f"the upcaster of {source!r} was registered with to={declared!r} but "
                    f"returned a {event.event_type!r} event (position {event.position}); make "
                    "it return the declared type, or fix to= (filtered readers rely on it)"
                )
        raise RuntimeError(
            f"upcasters for event type {event.event_type!r} form a chain longer than "
            f"{_MAX_CHAIN}; check that they do not loop back to an earlier type"
        )

    def stored_types_for(self, wanted: Iterable[str]) -> list[str]:
        """The stored event types to read so that every event of a ``wanted`` type is seen
        after upcasting: the wanted types, and every type that upcasts into one of them
        (or might: an upcaster registered without ``to=``)."""
        goal = set(wanted)
        found = list(dict.fromkeys(wanted))
        for source in self._by_type:
            if source in goal:
                continue
            kind: str | None = source
            for _ in range(_MAX_CHAIN):
                if kind is None or kind in goal or kind not in self._targets:
                    break
                kind = self._targets[kind]
            if kind is None or kind in goal:
                found.append(source)
        return found
