"""Fixtures of general use across the test suite.

The project root goes on ``sys.path`` so that tests (and the processes they
start) import the shared helpers as ``tests.support``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["eventstore.testing.plugin"]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eventstore.sqlite import SQLiteEventStore  # noqa: E402

_CHILDREN_TMP = "EVENTSTORE_TESTS_CHILDREN_TMPDIR"


def pytest_configure(config: pytest.Config) -> None:
    """Give the processes the tests start (notebook kernels, workers) a temp folder of their own.

    nbval stops each notebook's kernel by killing it, so a folder a tutorial
    leaves for the kernel's exit (04 keeps its store open for its widgets)
    would stay behind; so would anything of a worker killed by a fault test.
    Their ``TMPDIR`` points into one folder, removed when the run ends. This
    process keeps the temp folder it had (pytest's ``tmp_path`` lives there).
    """
    if os.environ.get(_CHILDREN_TMP):
        return
    tempfile.gettempdir()  # pin this process's own temp folder before TMPDIR changes
    folder = tempfile.mkdtemp(prefix="eventstore-tests-children-")
    os.environ[_CHILDREN_TMP] = folder
    os.environ["TMPDIR"] = folder
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.fixture(scope="session", autouse=True)
def _postgres_server_stops() -> Iterator[None]:
    """Stop the run's PostgreSQL server (started by the first test needing it) at the end."""
    yield
    from tests.support import postgres

    postgres.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def process_store(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """A store for a process manager's runner, once per adapter (tests/support/process_stores)."""
    from tests.support.process_stores import STORES

    return STORES[request.param](tmp_path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a new SQLite event store file in this test's own folder."""
    return tmp_path / "events.db"


@pytest.fixture
def memory_store() -> Iterator[SQLiteEventStore]:
    """A private in-memory SQLite event store, closed after the test."""
    with SQLiteEventStore(":memory:") as store:
        yield store
