"""Multi-tenancy: the request's tenant, and the two ways to keep tenants apart.

- **Shared database**: one store, a repository with ``tenant_isolation=True``;
  callers use plain ids, the store holds ``<tenant>::<id>`` (the code lives in
  ``eventstore.core.tenancy`` and ``eventstore.core.repository``: it is pure).
- **Database per tenant**: ``TenantStores`` opens one store per tenant,
  lazily, from a folder or a URL template.

The tenant of a request lives in a context variable (``with_tenant``,
``current_tenant``), set by the ``Router`` from the authenticated principal.

A shared store itself is the operator's view: its reads return every
tenant's events. Tenant-facing reads go through ``TenantEventSource``
(``Repository.event_log()`` gives the request's tenant its own), and
projection handlers run in the tenant of each event (``tenant_of``).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any

from .core.errors import (
    InvalidTenantError,
    StoreURLError,
    TenantForbiddenError,
    TenantMismatchError,
)
from .core.tenancy import (
    SEPARATOR,
    TENANT_ID_PATTERN,
    TenantEventSource,
    check_tenant_id,
    current_tenant,
    scoped_key,
    split_stored_id,
    stored_id,
    tenant_of,
    with_tenant,
)

TENANT_PLACEHOLDER = "{tenant}"


def _substituted(template: str, tenant_id: str) -> str:
    """``template`` with ``{tenant}`` replaced; in a PostgreSQL URL's ``schema=``, by a
    name PostgreSQL takes (``schema_name``)."""
    scheme = template.partition("://")[0].lower().split("+", 1)[0]
    base, sep, query = template.partition("?")
    if scheme not in ("postgresql", "postgres") or not sep:
        return template.replace(TENANT_PLACEHOLDER, tenant_id)
    parts = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        if name == "schema" and TENANT_PLACEHOLDER in value:
            value = schema_name(value, tenant_id)
        else:
            value = value.replace(TENANT_PLACEHOLDER, tenant_id)
        parts.append(f"{name}{eq}{value}")
    return f"{base.replace(TENANT_PLACEHOLDER, tenant_id)}?{'&'.join(parts)}"


def schema_name(pattern: str, tenant_id: str) -> str:
    """The PostgreSQL schema of ``tenant_id`` for a ``schema=`` pattern such as ``t_{tenant}``.

    A tenant id may hold ``-`` and be 64 characters long; a schema name holds
    letters, digits and ``_``, at most 63. An id that is already a safe part of
    a name (letters and digits in runs joined by single ``_``) is used as it
    is: ``acme_corp`` -> ``t_acme_corp``. Any other id gets ``_`` for ``-``,
    then ``__`` and 16 hex of a hash of the exact id: ``acme-corp`` ->
    ``t_acme_corp__<16 hex>``, cut to fit. So no id can name another's schema:
    a name used as it is never holds ``__``, a hashed one always does, and two
    hashed ones differ by their hash (64 bits: not worth searching for a
    collision), and the name is the same on every run.

    A pattern that starts with the id (``{tenant}``) would make a name PostgreSQL
    refuses of an id starting with ``pg_`` (its own schemas') or a digit: such an id
    is hashed too, its name starting with ``_`` (``pg_acme`` ->
    ``_pg_acme__<16 hex>``). SQL keywords (``user``, ``order``) are fine as they
    are: the store quotes its schema's name.
    """
    # A PostgreSQL URL: its adapter is installed.
    from .postgres.store import RESERVED_SCHEMA_PREFIX, schema_name_problem

    plain = pattern.replace(TENANT_PLACEHOLDER, tenant_id)
    if _SAFE_TENANT_PART.match(tenant_id) and schema_name_problem(plain) is None:
        return plain
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:16]
    part = tenant_id.replace("-", "_")
    refused = part[:1].isdigit() or part.startswith(RESERVED_SCHEMA_PREFIX)
    lead = "_" if pattern.startswith(TENANT_PLACEHOLDER) and refused else ""
    room = 63 - len(pattern.replace(TENANT_PLACEHOLDER, "")) - len(digest) - 2 - len(lead)
    part = lead + part[: max(room, 1)]
    return pattern.replace(TENANT_PLACEHOLDER, f"{part}__{digest}")


def _schema_pattern(template: str) -> str | None:
    """The ``schema=`` pattern of a PostgreSQL URL template holding ``{tenant}``, else None."""
    scheme = template.partition("://")[0].lower().split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        return None
    for item in template.partition("?")[2].split("&"):
        name, _, value = item.partition("=")
        if name == "schema" and TENANT_PLACEHOLDER in value:
            return value
    return None


def _schema_name_before_2026_12_02(pattern: str, tenant_id: str) -> str:
    """What ``schema_name`` gave before 2026-12-02: one ``_`` and 8 hex for a hashed id,
    and ids such as ``a__b`` used as they are (so one id could spell another's name)."""
    from .postgres.store import SCHEMA_NAME

    plain = pattern.replace(TENANT_PLACEHOLDER, tenant_id)
    if SCHEMA_NAME.match(plain):
        return plain
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:8]
    return f"{pattern.replace(TENANT_PLACEHOLDER, tenant_id.replace('-', '_'))[:54]}_{digest}"


def _refuse_a_moved_schema(template: str, tenant_id: str) -> None:
    """Refuse to open a tenant whose data sits under its schema's former name.

    Opening would create an empty schema under the new name, and the tenant's events
    would be out of reach without a word. The operator renames the schema once (the
    error gives the statement); a tenant whose name did not change costs nothing here.
    """
    pattern = _schema_pattern(template)
    if pattern is None:
        return
    new, old = schema_name(pattern, tenant_id), _schema_name_before_2026_12_02(pattern, tenant_id)
    if new == old:
        return
    import psycopg

    from .postgres.urls import postgres_dsn

    dsn, _ = postgres_dsn(_substituted(template, tenant_id))
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = {
            row[0]
            for row in conn.execute(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'events' AND table_schema = ANY(%s)",
                ([new, old],),
            )
        }
    if old in found and new not in found:
        raise StoreURLError(
            template,
            f"tenant {tenant_id!r}'s store is in schema {old!r}, its name before "
            f"2026-12-02; its schema is now named {new!r} (a name no other tenant id can "
            "spell), and opening it would start an empty store there",
            f'Rename it once, then open the tenant again: ALTER SCHEMA "{old}" RENAME TO "{new}";',
        )


#: A tenant id used as it is in a schema name: runs of letters and digits joined by one
#: ``_`` (so it holds no ``__``, which marks the hashed names).
_SAFE_TENANT_PART = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


class TenantStores:
    """One event store per tenant, opened on first use and closed together.

    ``root_or_url_template`` is a folder (tenant ``acme`` gets
    ``<folder>/acme.db``) or a store URL containing ``{tenant}``:
    ``sqlite:////data/{tenant}.db``, ``postgresql://app@db/bank_{tenant}``
    (a database per tenant, created beforehand) or
    ``postgresql://app@db/bank?schema=t_{tenant}`` (a schema per tenant, created
    on first open). Tenant ids are checked (``InvalidTenantError``) before
    they reach a path or a URL, so ``../x`` never names a file.

    Each tenant's store has its own position space: run projections and relays
    per tenant (``for_tenant(t)`` is the event source of that tenant's
    consumers); there is no merged log across tenants.
    """

    def __init__(self, root_or_url_template: str | os.PathLike[str], **options: Any) -> None:
        text = os.fspath(root_or_url_template)
        self.template = text if TENANT_PLACEHOLDER in text else None
        self.root = None if self.template is not None else Path(text)
        self.options = options
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def location(self, tenant_id: str) -> str:
        """Where ``tenant_id``'s store lives (a path or a URL; passwords are not redacted)."""
        check_tenant_id(tenant_id)
        if self.template is not None:
            return _substituted(self.template, tenant_id)
        assert self.root is not None
        return str(self.root / f"{tenant_id}.db")

    def for_tenant(self, tenant_id: str | None = None) -> Any:
        """The store of ``tenant_id`` (default: ``current_tenant()``), opened on first use."""
        tenant = current_tenant() if tenant_id is None else tenant_id
        if not tenant:
            raise TenantMismatchError("", "", "no tenant is set to choose a store by")
        check_tenant_id(tenant)
        with self._lock:
            if self._closed:
                raise RuntimeError("these TenantStores are closed; open a new TenantStores")
            store = self._stores.get(tenant)
            if store is None:
                from .stores import open_store

                if self.root is not None:
                    self.root.mkdir(parents=True, exist_ok=True)
                if self.template is not None:
                    _refuse_a_moved_schema(self.template, tenant)
                store = open_store(self.location(tenant), **self.options)
                self._stores[tenant] = store
            return store

    @property
    def open_tenants(self) -> list[str]:
        with self._lock:
            return sorted(self._stores)

    def close(self) -> None:
        """Close every store opened so far (the first error is raised after all are tried)."""
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
            self._closed = True
        first: BaseException | None = None
        for store in stores:
            try:
                store.close()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def __enter__(self) -> TenantStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "SEPARATOR",
    "TENANT_ID_PATTERN",
    "InvalidTenantError",
    "TenantEventSource",
    "TenantForbiddenError",
    "TenantMismatchError",
    "TenantStores",
    "check_tenant_id",
    "current_tenant",
    "scoped_key",
    "split_stored_id",
    "stored_id",
    "tenant_of",
    "with_tenant",
]
