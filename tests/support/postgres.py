"""One PostgreSQL server for the whole test run, and a fresh schema for each store.

``EVENTSTORE_PG_DSN`` points the tests at an external server; otherwise the
first test that needs one starts an ``EmbeddedPostgres`` (about a second),
which the session fixture in tests/conftest.py stops at the end. Each store
gets a schema of its own, so tests never see each other's events.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from typing import Any

import psycopg

_lock = threading.Lock()
_server: Any = None
_dsn: str | None = None
_schemas: list[str] = []
_counter = itertools.count(1)


def server_dsn() -> str:
    """The DSN of the run's server, starting the embedded one on first use."""
    global _server, _dsn
    with _lock:
        if _dsn is None:
            external = os.environ.get("EVENTSTORE_PG_DSN")
            if external:
                _dsn = external
            else:
                from eventstore.postgres import EmbeddedPostgres

                _server = EmbeddedPostgres().start()
                _dsn = _server.dsn
        return _dsn


def fresh_schema() -> str:
    """A new schema name, unique in this run and across runs on an external server."""
    name = f"t{next(_counter)}_{uuid.uuid4().hex[:8]}"
    _schemas.append(name)
    return name


def open_store(**options: Any) -> Any:
    """A ``PostgresEventStore`` on a schema of its own (empty)."""
    from eventstore.postgres import PostgresEventStore

    return PostgresEventStore(server_dsn(), schema=fresh_schema(), **options)


def stop() -> None:
    """Stop the embedded server, or drop this run's schemas on an external one."""
    global _server, _dsn
    with _lock:
        if _server is not None:
            _server.stop()
        elif _dsn is not None and _schemas:
            with psycopg.connect(_dsn, autocommit=True) as conn:
                for name in _schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        _server, _dsn = None, None
        _schemas.clear()
