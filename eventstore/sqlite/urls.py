"""SQLite store URLs in SQLAlchemy's grammar, for ``eventstore.open_store``.

``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite://`` and
``sqlite:///:memory:``; a ``file:`` URI is passed to SQLite as it is. Query
parameters are the store's options (``synchronous``, ``busy_timeout``,
``checkpoint_pages``, ``verify``) or SQLite's URI parameters (``mode``,
``cache``, ``immutable``, ``nolock``, ``vfs``), which open the file as a
``file:`` URI (``sqlite:////data/events.db?mode=ro`` reads it read-only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from ..core.errors import StoreURLError
from .store import SQLiteEventStore

_MEMORY = ":memory:"
_URI_PARAMETERS = ("cache", "immutable", "mode", "modeof", "nolock", "psow", "vfs")


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


_OPTIONS: dict[str, Callable[[str], object]] = {
    "synchronous": str,
    "busy_timeout": float,
    "checkpoint_pages": int,
    "verify": _flag,
}


def sqlite_path(url: str) -> tuple[str, dict[str, object]]:
    """The path (or ``file:`` URI) and the options a SQLite store URL names."""
    if url.startswith("file:"):
        return url, {}
    scheme, _, rest = url.partition("://")
    if not scheme.lower().startswith("sqlite"):
        raise StoreURLError(url, f"{scheme!r} is not a SQLite URL", "Start it with sqlite://.")
    rest, _, query = rest.partition("?")
    host, slash, path = rest.partition("/")
    if host:
        raise StoreURLError(
            url,
            f"a SQLite URL names no host, but this one names {host!r}",
            "Write sqlite:///relative.db or sqlite:////absolute/path.db (three or four slashes).",
        )
    path = unquote(path) if slash else ""
    options: dict[str, object] = {}
    uri_parameters: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _OPTIONS:
            try:
                options[name] = _OPTIONS[name](value)
            except ValueError as exc:
                raise StoreURLError(
                    url,
                    f"option {name}={value!r} is not valid ({exc})",
                    f"Give {name} as {_OPTIONS[name].__name__.lstrip('_')}.",
                ) from None
        elif name in _URI_PARAMETERS:
            uri_parameters.append((name, value))
        else:
            accepted = ", ".join([*_OPTIONS, *_URI_PARAMETERS])
            raise StoreURLError(
                url,
                f"unknown query parameter {name!r}",
                f"SQLite store URLs accept: {accepted}.",
            )
    if path in ("", _MEMORY):
        return _MEMORY, options
    if uri_parameters:
        encoded = "&".join(f"{n}={quote(v, safe='')}" for n, v in uri_parameters)
        return f"file:{quote(path)}?{encoded}", options
    return path, options


def open_url(url: str, **options: Any) -> SQLiteEventStore:
    """The SQLite store a URL names; keyword options win over the URL's query."""
    path, from_query = sqlite_path(url)
    return SQLiteEventStore(path, **{**from_query, **options})
