"""Opening and sharing SQLite connections.

Every connection the store opens gets the same pragmas (WAL, the chosen
``synchronous`` level, a busy timeout): the Go original set them on one
pooled connection only. Writes in one process go through one connection
under a lock, because several connections contending for SQLite's write lock
starve each other (toolchain-notes); the busy timeout is for other
processes. Reads on a file use one connection per thread, so they run beside
writes under WAL. ``:memory:`` is one private database behind one connection.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from ..core.errors import StoreClosedError

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """The pragmas read back from one connection right after it was opened."""

    role: str
    journal_mode: str
    synchronous: str
    busy_timeout_ms: int


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced.

    The pool holds connections weakly, so a reader connection closes when the
    thread that owned it ends (a thread per request would otherwise leak one
    connection and its file descriptors per thread).
    """


class ConnectionPool:
    def __init__(self, path: str, synchronous: str, busy_timeout: float) -> None:
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(
                f"synchronous={synchronous!r} is not a SQLite synchronous level; "
                f"use one of {', '.join(SYNCHRONOUS_LEVELS)}"
            )
        self.path = path
        self.is_memory = path == ":memory:" or path.startswith("file::memory:")
        self.synchronous = level
        self.busy_timeout_ms = int(busy_timeout * 1000)
        self.write_lock = threading.RLock()
        self._local = threading.local()
        self._all: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        self.settings: list[ConnectionSettings] = []
        self.closed = False
        if not self.is_memory:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise FileNotFoundError(
                    f"cannot open event store {path!r}: folder {parent!r} does not exist. "
                    "Create it first, or pass ':memory:' for a store in memory."
                )
        self.writer = self._open("writer")

    def _open(self, role: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
            uri=self.path.startswith("file:"),
            factory=_Connection,
        )
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        if not self.is_memory:
            self._enable_wal(conn)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        with self._all_lock:
            self._all.add(conn)
            self.settings.append(
                ConnectionSettings(
                    role, str(journal).upper(), SYNCHRONOUS_LEVELS[int(sync)], int(timeout)
                )
            )
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, waiting (up to the busy timeout) for other processes doing the same.

        SQLite does not call the busy handler for this pragma: several processes opening
        a new file at once otherwise fail at once with "database is locked".
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def check_open(self) -> None:
        if self.closed:
            raise StoreClosedError(self.path)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads: this thread's own on a file, the shared one in memory."""
        self.check_open()
        if self.is_memory:
            with self.write_lock:
                yield self.writer
            return
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open("reader")
            self._local.conn = conn
        yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer inside ``BEGIN IMMEDIATE``: commit on success, roll back on any error."""
        self.check_open()
        with self.write_lock:
            conn = self.writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self.write_lock, self._all_lock:
            if self.closed:
                return
            self.closed = True
            for conn in list(self._all):
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
