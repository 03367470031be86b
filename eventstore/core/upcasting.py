"""Event upcasters: turn stored events of an old shape into the current one on load.

Registered per stored event type; an upcaster may change the type (``v1`` to
``v2``), and upcasters chain until no upcaster is registered for the result.
The stored log is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable

from .events import Event

EventUpcaster = Callable[[Event], Event]

_MAX_CHAIN = 32


class Upcasters:
    def __init__(self) -> None:
        self._by_type: dict[str, EventUpcaster] = {}

    def register(self, event_type: str, upcaster: EventUpcaster | None = None):  # type: ignore[no-untyped-def]
        """Register ``upcaster`` for ``event_type``; usable as a decorator."""

        def add(fn: EventUpcaster) -> EventUpcaster:
            if event_type in self._by_type:
                raise ValueError(
                    f"an upcaster for event type {event_type!r} is already registered; "
                    "register one upcaster per stored type and chain them through types"
                )
            self._by_type[event_type] = fn
            return fn

        return add(upcaster) if upcaster is not None else add

    def __bool__(self) -> bool:
        return bool(self._by_type)

    def upcast(self, event: Event) -> Event:
        for _ in range(_MAX_CHAIN):
            fn = self._by_type.get(event.event_type)
            if fn is None:
                return event
            event = fn(event)
        raise RuntimeError(
            f"upcasters for event type {event.event_type!r} form a chain longer than "
            f"{_MAX_CHAIN}; check that they do not loop back to an earlier type"
        )
