"""The tenant of the current request: a context variable, its id rules, composite ids.

The tenant lives in a ``contextvars.ContextVar`` so it follows the request
through ``await`` and into the ``Router``'s handler threads (the context is
copied) without being passed by hand. A repository with
``tenant_isolation=True`` reads it to store aggregate ``acc-1`` of tenant
``acme`` as ``acme::acc-1`` (docs/service-edge.md).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import InvalidTenantError, TenantMismatchError
from .events import Event
from .ports import EventSource, Page, read_page

TENANT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""Tenant ids: lowercase (``Acme`` and ``acme`` are one file on a case-insensitive
filesystem), no ``:`` (the composite-id separator), no ``/`` or ``.`` (``../x``)."""

SEPARATOR = "::"

_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("eventstore_tenant", default="")


def check_tenant_id(tenant_id: object) -> str:
    """``tenant_id`` if it is valid; ``InvalidTenantError`` otherwise."""
    if not isinstance(tenant_id, str) or TENANT_ID_PATTERN.fullmatch(tenant_id) is None:
        raise InvalidTenantError(str(tenant_id))
    return tenant_id


def current_tenant() -> str:
    """The tenant of the running request ("" when none is set)."""
    return _tenant.get()


@contextmanager
def with_tenant(tenant_id: str | None) -> Iterator[str]:
    """Run the block in ``tenant_id`` (None or "" clears it); restores the previous one after."""
    value = check_tenant_id(tenant_id) if tenant_id else ""
    token = _tenant.set(value)
    try:
        yield value
    finally:
        _tenant.reset(token)


def stored_id(aggregate_id: str, tenant_id: str | None = None) -> str:
    """The id a shared store keeps for ``aggregate_id`` of ``tenant_id`` (default: the context's).

    Refuses a client id containing ``::`` (it could name another tenant's
    aggregate) and any id when no tenant is set: ``TenantMismatchError``.
    """
    tenant = current_tenant() if tenant_id is None else tenant_id
    if SEPARATOR in aggregate_id:
        raise TenantMismatchError(
            aggregate_id, tenant, "aggregate ids must not contain '::' (the tenant separator)"
        )
    if not tenant:
        raise TenantMismatchError(aggregate_id, "", "no tenant is set for this request")
    return f"{tenant}{SEPARATOR}{aggregate_id}"


def scoped_key(value: str, tenant_id: str | None = None) -> str:
    """A unique-constraint value or command id of one tenant, as the shared store keeps it."""
    tenant = current_tenant() if tenant_id is None else tenant_id
    if not tenant:
        raise TenantMismatchError(value, "", "no tenant is set for this request")
    return f"{tenant}{SEPARATOR}{value}"


def split_stored_id(stored: str) -> tuple[str, str]:
    """``(tenant, aggregate_id)`` of a stored composite id (``("", id)`` when it has none)."""
    tenant, sep, rest = stored.partition(SEPARATOR)
    return (tenant, rest) if sep else ("", stored)


class TenantEventSource:
    """The events of one tenant in a shared store's log: an event source for its consumers.

    Projections and followers fed from it see only aggregates stored as
    ``<tenant>::<id>`` (ids stay composite: ``split_stored_id`` gives the
    plain one). Positions are the shared log's, with gaps where other tenants'
    events are; everything else (checkpoints, commit listeners) is the
    underlying store's.
    """

    def __init__(self, source: EventSource, tenant_id: str) -> None:
        self.source = source
        self.tenant_id = check_tenant_id(tenant_id)
        self._prefix = f"{tenant_id}{SEPARATOR}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def head_position(self) -> int:
        return self.source.head_position()

    def read_page(self, after_position: int, *, limit: int, event_types: Any = None) -> Page:
        found: list[Event] = []
        position = after_position
        while True:
            page = read_page(self.source, position, limit=limit, event_types=event_types)
            for event in page.events:
                if event.aggregate_id.startswith(self._prefix):
                    found.append(event)
                    if len(found) >= limit:
                        return Page(found, event.position)
            if page.scanned_to <= position or len(page.events) < limit:
                return Page(found, max(page.scanned_to, position))
            position = page.scanned_to

    def read_all(
        self, after_position: int = 0, *, limit: int | None = None, event_types: Any = None
    ) -> list[Event]:
        if limit is not None:
            return self.read_page(after_position, limit=limit, event_types=event_types).events
        out: list[Event] = []
        position = after_position
        while True:
            page = self.read_page(position, limit=1000, event_types=event_types)
            out.extend(page.events)
            if page.scanned_to <= position or len(page.events) < 1000:
                return out
            position = page.scanned_to


__all__ = [
    "SEPARATOR",
    "TenantEventSource",
    "TENANT_ID_PATTERN",
    "check_tenant_id",
    "current_tenant",
    "scoped_key",
    "split_stored_id",
    "stored_id",
    "with_tenant",
]
