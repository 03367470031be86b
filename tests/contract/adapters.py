"""The adapters the contract suite runs against.

A new adapter joins the suite by adding one ``Adapter`` to ``ADAPTERS``: a
name and a function that opens a fresh, empty store (it may use the test's
``tmp_path``). Everything in ``tests/contract`` then runs against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventstore.sqlite import SQLiteEventStore
from tests.support import postgres


@dataclass(frozen=True)
class Adapter:
    name: str
    #: Opens a new empty store; the caller closes it.
    open: Callable[[Path], Any]

    def __str__(self) -> str:
        return self.name


ADAPTERS: list[Adapter] = [
    Adapter("sqlite-file", lambda tmp: SQLiteEventStore(tmp / "contract.db")),
    Adapter("sqlite-memory", lambda tmp: SQLiteEventStore(":memory:")),
    # Each append in its own transaction: the path before group commit, still offered.
    Adapter(
        "sqlite-ungrouped",
        lambda tmp: SQLiteEventStore(tmp / "contract.db", group_commit=False),
    ),
    # One server for the run (EVENTSTORE_PG_DSN or an embedded one), a schema per store.
    Adapter("postgres", lambda tmp: postgres.open_store(pool_size=2)),
]
