"""PostgreSQL store URLs for ``eventstore.open_store``.

``postgresql://user:password@host:port/db`` (or ``postgres://``, or
``postgresql+psycopg://``) opens a ``PostgresEventStore``. The store's own
options come from the query (``?schema=orders&pool_size=4&close_timeout=2``); every other
query parameter is libpq's (``sslmode``, ``connect_timeout``, ...) and stays in
the DSN.

A password may hold ``/ ? # @`` unencoded: it runs to the ``@`` before the host
(``core.errors.url_password_span``, which ``redact_url`` hides too), and those
characters reach libpq percent-encoded, so it reads the password as written.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from ..core.errors import StoreURLError, url_password_span
from .store import PostgresEventStore

_OPTIONS: dict[str, type] = {"schema": str, "pool_size": int, "close_timeout": float}
#: What a password may hold that would end it, or its URL's authority, for libpq.
_RESERVED = str.maketrans({"/": "%2F", "?": "%3F", "#": "%23", "@": "%40"})


def postgres_dsn(url: str) -> tuple[str, dict[str, object]]:
    """The libpq DSN and the store options a PostgreSQL URL names."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise StoreURLError(
            url, f"{scheme!r} is not a PostgreSQL URL", "Start it with postgresql://."
        )
    # The query starts after the password (which may hold a '?'), at the next '?'.
    span = url_password_span(url)
    after_password = 0
    if span is not None:
        start, end = (at - len(scheme) - len(sep) for at in span)
        password = rest[start:end].translate(_RESERVED)
        rest = f"{rest[:start]}{password}{rest[end:]}"
        after_password = start + len(password)
    mark = rest.find("?", after_password)
    base, query = (rest, "") if mark < 0 else (rest[:mark], rest[mark + 1 :])
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
