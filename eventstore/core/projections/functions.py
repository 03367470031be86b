"""Projections written as plain functions, turned into the ``Projection`` port by a decorator.

@projection("balances")
def balances(event: Event, ctx: ProjectionContext) -> None: ...

@balances.on_reset
def _(ctx: ProjectionContext) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..arguments import check_event_type_list
from ..events import Event
from .port import ProjectionContext

Handler = Callable[[Event, ProjectionContext], None]
ResetHandler = Callable[[ProjectionContext], None]


def event_type_name(kind: object) -> str:
    """The stored event type of ``kind``: a proto full name, or a message class's."""
    if isinstance(kind, str):
        return kind
    descriptor = getattr(kind, "DESCRIPTOR", None)
    full_name = getattr(descriptor, "full_name", None)
    if not isinstance(full_name, str):
        raise TypeError(
            f"event type {kind!r} is neither a proto full name nor a protobuf message class; "
            "pass e.g. 'bank.v1.MoneyDeposited' or bank_pb2.MoneyDeposited"
        )
    return full_name


def event_type_list(projection: str, kinds: object) -> list[str] | None:
    """A projection's ``event_types`` as stored type names (None: every type)."""
    if kinds is None:
        return None
    check_event_type_list(
        f"projection {projection!r}: ", kinds, "event types (names or message classes)"
    )
    return [event_type_name(kind) for kind in kinds]  # type: ignore[attr-defined]


class FunctionProjection:
    """A ``Projection`` made of a handler function and an optional reset function."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        event_types: Iterable[object] | None = None,
        reset: ResetHandler | None = None,
    ) -> None:
        self.name = name
        self.event_types = event_type_list(name, event_types)
        self._handler = handler
        self._reset = reset
        self.__doc__ = handler.__doc__
        self.__wrapped__ = handler

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        self._handler(event, ctx)

    def reset(self, ctx: ProjectionContext) -> None:
        if self._reset is not None:
            self._reset(ctx)

    def on_reset(self, fn: ResetHandler) -> ResetHandler:
        """Register what ``reset`` does (create or empty the read model's tables, say)."""
        self._reset = fn
        return fn

    def __call__(self, event: Event, ctx: ProjectionContext) -> None:
        self._handler(event, ctx)

    def __repr__(self) -> str:
        return f"FunctionProjection({self.name!r}, {getattr(self._handler, '__qualname__', '?')})"


def projection(
    name: str, *, event_types: Iterable[object] | None = None
) -> Callable[[Handler], FunctionProjection]:
    """Decorate ``fn(event, ctx)`` to make it a projection named ``name``.

    ``event_types`` (proto full names or message classes) limits what it is fed.
    """

    def wrap(fn: Handler) -> FunctionProjection:
        return FunctionProjection(name, fn, event_types=event_types)

    return wrap
