"""The stores a process manager's runner is tested on, each with its own ``ProcessRunner``.

``STORES`` parametrises the runner's tests (the ``process_store`` fixture in
tests/conftest.py). A ``ProcessStore`` opens the same store again on every
``open()`` (a restart), names its runner class, and runs raw SQL on it for
the tests that tamper with the runner's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventstore.sqlite import SQLiteEventStore

from . import postgres


@dataclass
class ProcessStore:
    name: str
    #: Opens the test's store (the same one each time: a restart reopens it).
    open: Callable[..., Any]
    #: The ``ProcessRunner`` class of the store's adapter.
    runner: type
    #: The arguments a child process needs to open the same store (see ``open_from_argv``).
    argv: list[str]

    def execute(self, store: Any, sql: str) -> None:
        """Run ``sql`` in a transaction of ``store``'s database."""
        if isinstance(store, SQLiteEventStore):
            with store._db.transaction() as conn:
                conn.execute(sql)
        else:
            with store.reading() as conn, conn.transaction():
                conn.execute(sql.encode())


def sqlite_store(tmp_path: Path) -> ProcessStore:
    from eventstore.sqlite import ProcessRunner

    path = tmp_path / "bank.db"
    return ProcessStore(
        "sqlite",
        lambda **options: SQLiteEventStore(path, **options),
        ProcessRunner,
        ["sqlite", str(path)],
    )


def postgres_store(tmp_path: Path) -> ProcessStore:
    from eventstore.postgres import PostgresEventStore, ProcessRunner

    dsn, schema = postgres.server_dsn(), postgres.fresh_schema()
    return ProcessStore(
        "postgres",
        lambda **options: PostgresEventStore(
            dsn, schema=schema, pool_size=2, **_postgres_options(options)
        ),
        ProcessRunner,
        ["postgres", dsn, schema],
    )


def _postgres_options(options: dict[str, Any]) -> dict[str, Any]:
    options.pop("synchronous", None)  # a SQLite durability setting; PostgreSQL has its own
    return options


STORES: dict[str, Callable[[Path], ProcessStore]] = {
    "sqlite": sqlite_store,
    "postgres": postgres_store,
}


def open_from_argv(argv: list[str]) -> tuple[Any, type]:
    """The store and runner class a child process was given (``ProcessStore.argv``)."""
    if argv[0] == "sqlite":
        from eventstore.sqlite import ProcessRunner

        return SQLiteEventStore(argv[1]), ProcessRunner
    from eventstore.postgres import PostgresEventStore
    from eventstore.postgres import ProcessRunner as PostgresRunner

    return PostgresEventStore(argv[1], schema=argv[2], pool_size=2), PostgresRunner
