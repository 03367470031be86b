"""Opening an event store from a URL: one entry point that every storage adapter joins.

``open_store(url, **options)`` reads SQLAlchemy's URL grammar:

- ``sqlite:///relative.db`` and ``sqlite:////abs/path.db`` (three slashes, then the
  path: a fourth makes it absolute), ``sqlite://`` or ``sqlite:///:memory:`` for a
  private store in memory; query parameters are options
  (``sqlite:///events.db?synchronous=NORMAL&verify=true``) or SQLite's own URI
  parameters (``?mode=ro``);
- a plain path (``events.db``, ``:memory:``) or a ``file:`` URI is a SQLite path;
- ``postgresql://user@host/db`` joins when the PostgreSQL adapter does.

This module sits above the adapters and imports an adapter only when its scheme
is used, so ``import eventstore`` stays light and adapters never import each
other. An adapter joins by adding its scheme to ``ADAPTERS``: the value names a
factory, ``"module:function"``, called as ``function(url, **options)``.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from .core.errors import AdapterUnavailableError, StoreURLError

#: scheme -> (adapter's name for messages, "module:factory" taking (url, **options)).
ADAPTERS: dict[str, tuple[str, str]] = {
    "sqlite": ("SQLite", "eventstore.sqlite.urls:open_url"),
    "file": ("SQLite", "eventstore.sqlite.urls:open_url"),
    "postgresql": ("PostgreSQL", "eventstore.postgres.urls:open_url"),
    "postgres": ("PostgreSQL", "eventstore.postgres.urls:open_url"),
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def url_scheme(url: str) -> str | None:
    """The adapter part of a URL's scheme (``postgresql`` of ``postgresql+psycopg``), or None.

    A URL is ``scheme://...`` or a ``file:`` URI; anything else (``events.db``,
    ``:memory:``, ``C:\\data\\events.db``) is a plain path.
    """
    if url.startswith("file:"):
        return "file"
    match = _SCHEME.match(url)
    return match.group(1).split("+", 1)[0].lower() if match else None


def open_store(url: str | os.PathLike[str], **options: Any) -> Any:
    """Open the event store a URL names (see the module's docs); ``options`` go to the store.

    Keyword options win over the same option in the URL's query.
    """
    text = os.fspath(url)
    scheme = url_scheme(text)
    if scheme is None:
        from .sqlite import SQLiteEventStore

        return SQLiteEventStore(text, **options)
    if scheme not in ADAPTERS:
        known = ", ".join(f"{s}://" for s in sorted(ADAPTERS) if s != "file")
        raise StoreURLError(
            text,
            f"no storage adapter for scheme {scheme!r}",
            f"Use one of {known}, a file: URI or a plain file path.",
        )
    adapter, target = ADAPTERS[scheme]
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AdapterUnavailableError(text, adapter, module_name.rsplit(".", 1)[0]) from None
        raise
    return getattr(module, function)(text, **options)


__all__ = ["ADAPTERS", "open_store", "url_scheme"]
