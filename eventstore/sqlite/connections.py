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

# WAL pages written before SQLite checkpoints automatically (its default is 1,000).
# A checkpoint syncs the WAL and the database file; an idempotent command writes
# several B-trees, so at 1,000 pages those syncs come every couple of hundred
# commands and dominate a save at synchronous=NORMAL (docs/decisions.md, 12).
DEFAULT_CHECKPOINT_PAGES = 10_000


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """The pragmas read back from one connection right after it was opened."""

    role: str
    journal_mode: str
    synchronous: str
    busy_timeout_ms: int
    checkpoint_pages: int


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced.

    The pool holds connections weakly, so a reader connection closes when the
    thread that owned it ends (a thread per request would otherwise leak one
    connection and its file descriptors per thread).
    """


class _Transaction:
    """``with pool.transaction() as conn``: a class, not a generator, because every append
    goes through it and a generator-based context manager costs a few microseconds more."""

    __slots__ = ("_pool",)

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def __enter__(self) -> sqlite3.Connection:
        pool = self._pool
        pool.check_open()
        pool.write_lock.acquire()
        try:
            pool.writer.execute("BEGIN IMMEDIATE")
        except BaseException:
            pool.write_lock.release()
            raise
        return pool.writer

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        pool = self._pool
        try:
            if exc_type is None:
                try:
                    pool.writer.execute("COMMIT")
                except BaseException:
                    self._roll_back()
                    raise
            else:
                self._roll_back()
        finally:
            pool.write_lock.release()

    def _roll_back(self) -> None:
        # SQLite may already have rolled back (disk full, I/O error): then there is nothing
        # to undo, and the error that got us here is the one to report.
        writer = self._pool.writer
        if writer.in_transaction:
            writer.execute("ROLLBACK")


class ConnectionPool:
    def __init__(
        self,
        path: str,
        synchronous: str,
        busy_timeout: float,
        checkpoint_pages: int = DEFAULT_CHECKPOINT_PAGES,
    ) -> None:
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
        if checkpoint_pages < 1:
            raise ValueError(
                f"checkpoint_pages must be 1 or more (SQLite's default is 1000), "
                f"got {checkpoint_pages}"
            )
        self.checkpoint_pages = checkpoint_pages
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
        conn.execute(f"PRAGMA wal_autocheckpoint = {self.checkpoint_pages}")
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        checkpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        with self._all_lock:
            self._all.add(conn)
            self.settings.append(
                ConnectionSettings(
                    role,
                    str(journal).upper(),
                    SYNCHRONOUS_LEVELS[int(sync)],
                    int(timeout),
                    int(checkpoint),
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

    def transaction(self) -> _Transaction:
        """The writer inside ``BEGIN IMMEDIATE``: commit on success, roll back on any error."""
        return _Transaction(self)

    def close(self) -> None:
        with self.write_lock, self._all_lock:
            if self.closed:
                return
            self.closed = True
            for conn in list(self._all):
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
