"""The ``eventsourcing`` library baseline (9.5.x, its SQLite persistence).

The aggregate does the same domain work as ``tests/support/bank.Account``:
an account that is opened and takes deposits, each event changing the balance
and appending the event's name to a history list; one event per command.

Configuration is the library's own: an ``Application`` given the environment
``PERSISTENCE_MODULE=eventsourcing.sqlite`` and ``SQLITE_DBNAME=<file>`` (it
switches the file to WAL itself). The library has no setting for SQLite's
``synchronous`` pragma, so SQLite's default applies (FULL in this build); for
the NORMAL figures the connection pool's connection factory is wrapped to run
``PRAGMA synchronous = NORMAL`` on every connection it opens, before any is
opened, which is the only change made to the library's behaviour.
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class EsAccount(Aggregate):
    """The bank account of tests/support/bank.py, as an eventsourcing POPO aggregate."""

    @event("AccountOpened")
    def __init__(self, owner: str, initial_balance: int = 0) -> None:
        self.owner = owner
        self.balance = initial_balance
        self.closed = False
        self.history = ["AccountOpened"]

    @event("MoneyDeposited")
    def deposit(self, amount: int) -> None:
        self.balance += amount
        self.history.append("MoneyDeposited")


class EsBank(Application[UUID]):
    """An application with no snapshotting unless the environment asks for it."""


def open_app(path: str, synchronous: str, *, snapshots: bool = False) -> EsBank:
    """An application on ``path`` with every SQLite connection at ``synchronous``."""
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": os.fspath(path),
        "IS_SNAPSHOTTING_ENABLED": "y" if snapshots else "n",
    }
    # Application.__init__ creates the tables (and so a connection) at once, so the
    # pragma hook has to be on the pool class for the duration of construction.
    from eventsourcing.sqlite import SQLiteConnectionPool

    original = SQLiteConnectionPool._create_connection

    def create_connection(pool: Any) -> Any:
        conn = original(pool)
        conn._sqlite_conn.execute(f"PRAGMA synchronous = {synchronous}")
        return conn

    SQLiteConnectionPool._create_connection = create_connection  # type: ignore[method-assign, assignment]
    try:
        app = EsBank(env=env)
    finally:
        SQLiteConnectionPool._create_connection = original  # type: ignore[method-assign]
    pool = app.factory.datastore.pool  # type: ignore[attr-defined]
    pool._create_connection = lambda: create_connection(pool)
    return app


def connection_synchronous(app: EsBank) -> list[int]:
    """``PRAGMA synchronous`` read back from every connection the app's pool holds."""
    pool = app.factory.datastore.pool  # type: ignore[attr-defined]
    levels = []
    conn = pool.get_connection(is_writer=True)
    try:
        levels.append(conn._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        pool.put_connection(conn)
    return levels
