"""PostgreSQL store URLs for ``eventstore.open_store``.

``postgresql://user:password@host:port/db`` (or ``postgres://``, or
``postgresql+psycopg://``) opens a ``PostgresEventStore``. The store's own
options come from the query (``?schema=orders&pool_size=4&close_timeout=2``); every other
query parameter is libpq's (``sslmode``, ``connect_timeout``, ...) and stays in
the DSN.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from ..core.errors import StoreURLError
from .store import PostgresEventStore

_OPTIONS: dict[str, type] = {"schema": str, "pool_size": int, "close_timeout": float}


def postgres_dsn(url: str) -> tuple[str, dict[str, object]]:
    """The libpq DSN and the store options a PostgreSQL URL names."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise StoreURLError(
            url, f"{scheme!r} is not a PostgreSQL URL", "Start it with postgresql://."
        )
    base, _, query = rest.partition("?")
    options: dict[str, object] = {}
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _OPTIONS:
            try:
                options[name] = _OPTIONS[name](value)
            except ValueError:
                raise StoreURLError(
                    url,
                    f"option {name}={value!r} is not valid",
                    f"Give {name} as {_OPTIONS[name].__name__}.",
                ) from None
        else:
            kept.append((name, value))
    # Percent-encoded (a space as %20): libpq reads a '+' in a URI as a plus sign.
    dsn = f"postgresql://{base}" + (f"?{urlencode(kept, quote_via=quote)}" if kept else "")
    return dsn, options


def open_url(url: str, **options: Any) -> PostgresEventStore:
    """The PostgreSQL store a URL names; keyword options win over the URL's query."""
    dsn, from_query = postgres_dsn(url)
    return PostgresEventStore(dsn, **{**from_query, **options})
