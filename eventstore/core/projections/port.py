"""The projection port: what the projection runner feeds.

A projection is written once and fed from any event log (the store's log
in this process, other processes' commits by polling, the NATS bus later).
Generated ``<Type>ProjectionBuilder.build()`` returns one of these; plain
classes with the same members work too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..events import Event


@dataclass(slots=True)
class ProjectionContext:
    """What a handler receives beside the event.

    ``position`` is the global position of the event being handled, for
    projections with outside effects that must deduplicate (delivery is at
    least once). ``connection`` is the read model's open transaction when the
    projection keeps its read model in SQLite (the checkpoint is written in that
    same transaction), else None.
    """

    projection: str
    position: int = 0
    connection: Any = None


@runtime_checkable
class Projection(Protocol):
    name: str

    def handle(self, event: Event, ctx: ProjectionContext) -> None: ...

    def reset(self, ctx: ProjectionContext) -> None:
        """Forget everything derived so far (a rebuild follows)."""
        ...
