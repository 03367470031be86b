"""The projection port: what the projection runner feeds.

A projection is written once and fed from any event log (the store's log
in this process, other processes' commits by polling, the NATS bus later).
Generated ``<Type>ProjectionBuilder.build()`` returns one of these; plain
classes with the same members work too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import EventStoreError
from ..events import Event


class _NoStoreInTransaction:
    """``ctx.store`` where appends cannot join the read model's transaction: falsy, and
    any use says why and what to do."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        raise EventStoreError(
            f"ctx.store.{name}: this projection's read model does not live in the event "
            "store's file, so its handler cannot append atomically with its checkpoint. "
            "Register the projection with read_model=SQLiteReadModel(store) to append from "
            "its handler (a process manager), or append through the store itself and "
            "deduplicate by command id."
        )

    def __repr__(self) -> str:
        return "<no event store in this transaction>"


NO_STORE_IN_TRANSACTION: Any = _NoStoreInTransaction()


@dataclass(slots=True)
class ProjectionContext:
    """What a handler receives beside the event.

    ``position`` is the global position of the event being handled, for
    projections with outside effects that must deduplicate (delivery is at
    least once). ``connection`` is the read model's open transaction when the
    projection keeps its read model in SQLite (the checkpoint is written in that
    same transaction), else None. ``store`` is the event store inside that same
    transaction when the read model lives in the store's own file
    (``SQLiteReadModel(store)``): ``ctx.store.append(...)`` (or a
    ``Repository(ctx.store, ...)``) commits with the batch and its checkpoint
    or not at all. Elsewhere it is falsy and using it raises, saying why.
    ``tenant`` is the tenant of the event being handled (``tenant_of``: the
    prefix of a composite stored id ``acme::acc-1``, else the metadata's
    ``tenant_id``, "" for none); the handler runs inside ``with_tenant(tenant)``,
    so a read model keys its rows by it (queries then filter by
    ``current_tenant()``) and a process manager's tenant-isolated repository
    acts in that tenant.
    """

    projection: str
    position: int = 0
    connection: Any = None
    store: Any = NO_STORE_IN_TRANSACTION
    tenant: str = ""


@runtime_checkable
class Projection(Protocol):
    name: str

    def handle(self, event: Event, ctx: ProjectionContext) -> None: ...

    def reset(self, ctx: ProjectionContext) -> None:
        """Forget everything derived so far (a rebuild follows)."""
        ...
