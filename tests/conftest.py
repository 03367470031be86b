"""Fixtures of general use across the test suite.

The project root goes on ``sys.path`` so that tests (and the processes they
start) import the shared helpers as ``tests.support``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eventstore.sqlite import SQLiteEventStore  # noqa: E402


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a new SQLite event store file in this test's own folder."""
    return tmp_path / "events.db"


@pytest.fixture
def memory_store() -> Iterator[SQLiteEventStore]:
    """A private in-memory SQLite event store, closed after the test."""
    with SQLiteEventStore(":memory:") as store:
        yield store
