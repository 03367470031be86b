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


def tenant_of(event: Event) -> str:
    """The tenant an event belongs to ("" for none).

    The stored id decides when it is composite (``acme::acc-1``): a
    tenant-isolated repository composed it from the request's authenticated
    tenant, and it is where the aggregate lives, whatever the metadata says.
    Otherwise the metadata's ``tenant_id`` (a store per tenant, or a service
    that records the tenant without isolating ids). Anything that is not a
    valid tenant id is no tenant.
    """
    tenant, sep, _ = event.aggregate_id.partition(SEPARATOR)
    if not sep:
        # A cheap look at the JSON first: most events carry no tenant.
        tenant = event.metadata.tenant_id if '"t":' in (event.metadata_json or "") else ""
    return tenant if tenant and TENANT_ID_PATTERN.fullmatch(tenant) else ""


class TenantEventSource:
    """One tenant's view of a shared store's log: what a tenant-facing reader is given.

    The shared store is the operator's view: its ``read_all``, ``load_stream``
    and the rest return every tenant's events. This wrapper returns only the
    events of aggregates stored as ``<tenant>::<id>`` and has no unscoped
    read: ``read_all``, ``read_page``, ``iter_all`` (the log, positions the
    shared log's, with gaps where other tenants' events are),
    ``load_stream``/``stream_version`` (by the tenant's plain id; an id
    containing ``::`` is ``TenantMismatchError``), ``head_position`` and the
    source's commit listeners (positions only). Anything else, the store's
    writes and its unique-constraint tables included, is an
    ``AttributeError``: reach the store itself for those.

    Events keep their stored (composite) ids: ``split_stored_id`` gives the
    plain one, ``tenant_of`` the tenant. ``Repository.event_log()`` gives the
    request's tenant its view when the repository isolates tenants.
    """

    _FORWARDED = frozenset({"add_commit_listener", "remove_commit_listener"})

    def __init__(self, source: EventSource, tenant_id: str) -> None:
        self.source = source
        self.tenant_id = check_tenant_id(tenant_id)
        self._prefix = f"{tenant_id}{SEPARATOR}"

    def __getattr__(self, name: str) -> Any:
        if name in TenantEventSource._FORWARDED:
            return getattr(self.source, name)
        tenant = self.__dict__.get("tenant_id", "")  # not self.tenant_id: no recursion
        raise AttributeError(
            f"TenantEventSource of tenant {tenant!r} has no {name!r}: it offers only "
            "reads scoped to that tenant (read_all, read_page, iter_all, load_stream, "
            "stream_version, head_position). Use the store itself for anything else; it is "
            "the operator's view of every tenant."
        )

    def __repr__(self) -> str:
        return f"<TenantEventSource {self.tenant_id!r} of {self.source!r}>"

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
        return list(self.iter_all(after_position, event_types=event_types))

    def iter_all(
        self, after_position: int = 0, *, event_types: Any = None, page_size: int = 1000
    ) -> Iterator[Event]:
        """The tenant's events after ``after_position``, page by page."""
        position = after_position
        while True:
            page = self.read_page(position, limit=page_size, event_types=event_types)
            yield from page.events
            if page.scanned_to <= position or len(page.events) < page_size:
                return
            position = page.scanned_to

    def load_stream(self, aggregate_id: str, *args: Any, **kwargs: Any) -> list[Event]:
        """The events of the tenant's aggregate ``aggregate_id`` (its plain id)."""
        events: list[Event] = self.source.load_stream(  # type: ignore[attr-defined]
            stored_id(aggregate_id, self.tenant_id), *args, **kwargs
        )
        return events

    def stream_version(self, aggregate_id: str) -> int:
        """The version of the tenant's aggregate ``aggregate_id`` (0: it has none)."""
        version: int = self.source.stream_version(  # type: ignore[attr-defined]
            stored_id(aggregate_id, self.tenant_id)
        )
        return version


__all__ = [
    "SEPARATOR",
    "TenantEventSource",
    "TENANT_ID_PATTERN",
    "check_tenant_id",
    "current_tenant",
    "scoped_key",
    "split_stored_id",
    "stored_id",
    "tenant_of",
    "with_tenant",
]
