"""Opening and sharing SQLite connections.

Every connection the store opens gets the same pragmas (WAL, the chosen
``synchronous`` level, a busy timeout): the Go original set them on one
pooled connection only. Writes in one process go through one connection
under a lock, because several connections contending for SQLite's write lock
starve each other (toolchain-notes); the busy timeout is for other
processes. Reads on a file use one connection per thread, so they run beside
writes under WAL. ``:memory:`` is one private database behind one connection.

Closing is safe while other threads read: a reader connection is handed out
with a use count and is closed only by the last thread using it (docs/decisions.md).
SQLite errors that are about the file (read-only, full, damaged, not a database)
become ``StorageError`` subclasses that name it.
"""

from __future__ import annotations

import contextlib
import numbers
import operator
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from ..core.errors import (
    CorruptDatabaseError,
    IntegerRangeError,
    NotADatabaseError,
    PayloadTooLargeError,
    ReadOnlyStoreError,
    StorageError,
    StorageFullError,
    StoreBusyError,
    StoreClosedError,
)
from ..core.projections.read_models import StoreWriteInBatchError

#: SQLite's primary result codes for a lock it waited on in vain.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

# WAL pages written before SQLite checkpoints automatically (its default is 1,000).
# A checkpoint syncs the WAL and the database file; an idempotent command writes
# several B-trees, so at 1,000 pages those syncs come every couple of hundred
# commands and dominate a save at synchronous=NORMAL (docs/decisions.md, 12).
DEFAULT_CHECKPOINT_PAGES = 10_000

# How long close() waits for reads in flight on other threads (after interrupting them)
# before it leaves their connections for those threads to close when they finish.
CLOSE_WAIT_SECONDS = 5.0

# SQLite's primary result codes that concern the file, not the statement.
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CANTOPEN = 14
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_TOOBIG = 18
_SQLITE_NOTADB = 26
_SQLITE_READONLY_DIRECTORY = 1544


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """The pragmas read back from one connection right after it was opened."""

    role: str
    journal_mode: str
    synchronous: str
    busy_timeout_ms: int
    checkpoint_pages: int


class _Reader:
    """One thread's reader connection and how many calls of that thread are using it.

    Only its own thread changes ``users``; ``close()`` on another thread reads it
    after setting ``pool.closed``, and the reader checks ``pool.closed`` after
    counting itself in, so one of the two always sees the other: a connection is
    never closed under a statement (that crashed the process, issue 8).
    The pool holds readers weakly: a thread's reader (and its entry in
    ``connection_settings()``) goes when the thread ends.
    """

    __slots__ = ("__weakref__", "conn", "is_closed", "settings", "users")

    def __init__(self, conn: sqlite3.Connection, settings: ConnectionSettings) -> None:
        self.conn = conn
        self.settings = settings
        self.users = 0
        self.is_closed = False


class _Transaction:
    """``with pool.transaction() as conn``: a class, not a generator, because every append
    goes through it and a generator-based context manager costs a few microseconds more."""

    __slots__ = ("_pool",)

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def __enter__(self) -> sqlite3.Connection:
        pool = self._pool
        pool.check_open()
        pool.acquire_writer()
        began = False
        try:
            # close() may have run while this thread waited for the lock.
            pool.check_open()
            if pool.writer.in_transaction:
                # Only this thread can have it open: it holds the (reentrant) lock.
                projection = getattr(pool._local, "projection", None)
                if projection is not None:
                    raise StoreWriteInBatchError(pool.path, projection)
            else:
                began = True
            pool.writer.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            if began and pool.writer.in_transaction:
                # Interrupted (Ctrl-C) just after BEGIN succeeded: leave no transaction
                # open, or every later write on this connection would fail.
                with contextlib.suppress(sqlite3.Error):
                    pool.writer.execute("ROLLBACK")
            pool.write_lock.release()
            if isinstance(exc, (sqlite3.Error, OverflowError)):
                raise pool.translate(exc) from exc
            raise
        return pool.writer

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        pool = self._pool
        try:
            if exc is None:
                try:
                    pool.writer.execute("COMMIT")
                except (sqlite3.Error, OverflowError) as error:
                    self._roll_back()
                    raise pool.translate(error) from error
            else:
                self._roll_back()
                if isinstance(exc, (sqlite3.Error, OverflowError)):
                    translated = pool.translate(exc)
                    if translated is not exc:
                        raise translated from exc
        finally:
            pool.write_lock.release()

    def _roll_back(self) -> None:
        # SQLite may already have rolled back (disk full, I/O error): then there is nothing
        # to undo, and the error that got us here is the one to report.
        writer = self._pool.writer
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed under us: nothing to undo
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
        level = synchronous.upper() if isinstance(synchronous, str) else None
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(
                f"synchronous={synchronous!r} is not a SQLite synchronous level; "
                f"use one of {', '.join(SYNCHRONOUS_LEVELS)} (a string)"
            )
        self.path = path
        self.is_memory = _is_memory(path)
        # Every connection opens the file the first one did: a relative path is made
        # absolute now, so a reader opened after the process changes its working folder
        # does not create an empty database there.
        self._connect_path = (
            path if self.is_memory or path.startswith("file:") else os.path.abspath(path)
        )
        self.synchronous = level
        self.busy_timeout_ms = _busy_timeout_ms(busy_timeout)
        pages = _whole_number(checkpoint_pages)
        if pages is None or pages < 1:
            raise ValueError(
                f"checkpoint_pages must be a whole number, 1 or more (SQLite's default is "
                f"1000), got {checkpoint_pages!r}"
            )
        self.checkpoint_pages = pages
        self.write_lock = threading.RLock()
        self._local = threading.local()  # this thread's reader, and the projection it runs
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._readers_changed = threading.Condition(threading.Lock())
        self.closed = False
        self.file_path = file_path_of(path)
        if self.file_path is not None:
            parent = os.path.dirname(os.path.abspath(self.file_path))
            if not os.path.isdir(parent):
                raise FileNotFoundError(
                    f"cannot open event store {path!r}: folder {parent!r} does not exist. "
                    "Create it first, or pass ':memory:' for a store in memory."
                )
        try:
            self.writer, self.writer_settings = self._open("writer")
        except (sqlite3.Error, OverflowError) as exc:
            raise self.translate(exc) from exc
        # The file the writer has open: a write checks that the path still names it (by
        # its absolute path: a relative one would follow the process's working folder).
        self._identity_path = None if self.file_path is None else os.path.abspath(self.file_path)
        self._identity = _identity(self._identity_path)

    @property
    def settings(self) -> list[ConnectionSettings]:
        """The settings of the writer and of every reader connection still open."""
        with self._readers_changed:
            readers = [r.settings for r in list(self._readers) if not r.is_closed]
        return [self.writer_settings, *readers]

    def _open(self, role: str) -> tuple[sqlite3.Connection, ConnectionSettings]:
        conn = sqlite3.connect(
            self._connect_path,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
            uri=self.path.startswith("file:"),
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            if not self.is_memory:
                self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {self.checkpoint_pages}")
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
            timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            checkpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        settings = ConnectionSettings(
            role,
            str(journal).upper(),
            SYNCHRONOUS_LEVELS[int(sync)],
            int(timeout),
            int(checkpoint),
        )
        return conn, settings

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, waiting (up to the busy timeout) for other processes doing the same.

        SQLite does not call the busy handler for this pragma: several processes opening
        a new file at once otherwise fail at once with "database is locked".
        A read-only connection (``mode=ro``) keeps the file's journal mode.
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) == _SQLITE_READONLY:
                    return  # opened read-only: reads work in the file's own mode
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def acquire_writer(self) -> None:
        """Take the write lock, waiting at most the busy timeout (``IN_PROCESS_WAIT`` at
        least), as SQLite waits for another process's lock: a thread that waited for ever
        could be waited for by the holder (a projection handler that hands a read or an
        append to another thread and joins it, inside its batch's transaction), and both
        would hang.

        Not the busy timeout alone: a short one (0: fail at once when another process
        holds the file) would make this process's own threads fail each other while
        they merely take turns."""
        wait = min(max(self.busy_timeout_ms / 1000, IN_PROCESS_WAIT), threading.TIMEOUT_MAX)
        if self.write_lock.acquire(timeout=wait):
            if self._identity is not None and not self._same_file():
                self.write_lock.release()
                raise self._file_gone()
            return
        held = (
            "the in-memory store's one connection (every thread's)"
            if self.is_memory
            else "the store's writer connection"
        )
        raise StoreBusyError(
            self.path,
            wait,
            f"{held} was held by another thread of this process all that time: a read "
            "model's batch, a group of appends, or a projection handler waiting for this "
            "very call (in a handler, use ctx.store, on the handler's own thread)",
            in_process=True,
        )

    def owns_write_lock(self) -> bool:
        """Whether this thread holds the write lock (inside a read model's transaction on
        the writer): an append queued for a group would then wait for itself."""
        owned = getattr(self.write_lock, "_is_owned", None)
        return bool(owned()) if owned is not None else False

    @contextlib.contextmanager
    def running_projection(self, name: str) -> Iterator[None]:
        """Mark this thread as running projection ``name``'s code inside a transaction on
        the writer: a write through the store object there then fails, naming it."""
        previous = getattr(self._local, "projection", None)
        self._local.projection = name
        try:
            yield
        finally:
            self._local.projection = previous

    def check_open(self) -> None:
        if self.closed:
            raise StoreClosedError(self.path)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads: this thread's own on a file, the shared one in memory
        (held under the write lock, as the writer it is)."""
        self.check_open()
        reader: _Reader | None = None
        if self.is_memory:
            self.acquire_writer()
            conn = self.writer
        else:
            reader = getattr(self._local, "reader", None)
            if reader is None:
                reader = self._new_reader()
            reader.users += 1
            conn = reader.conn
        try:
            if self.closed:  # after counting in (see _Reader), or after the lock's wait
                raise StoreClosedError(self.path)
            yield conn
        except (sqlite3.Error, OverflowError) as exc:
            translated = self.translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            if reader is None:
                self.write_lock.release()
            else:
                reader.users -= 1
                if self.closed:
                    self._close_reader(reader)

    def _same_file(self) -> bool:
        """Whether the path still names the file the store opened (or cannot be looked at)."""
        now = _identity(self._identity_path)
        return now is None or now == self._identity

    def _file_gone(self) -> StorageError:
        """The error for a file deleted, moved or replaced while the store had it open.

        SQLite goes on writing to the open (deleted) file and acknowledges every append,
        all of it lost at close; a reader opened afterwards would create a new empty
        database at the path. So a write or a new reader checks first.
        """
        return StorageError(
            self.path,
            f"the database file {self.file_path!r} was deleted, moved or replaced while the "
            "store had it open, so nothing more can be written to it or read from it",
            "Close this store object. If the file was moved, open it where it is now; if it "
            "was deleted, restore it from a backup (appends made since are lost).",
        )

    def _new_reader(self) -> _Reader:
        if self._identity is not None and not self._same_file():
            raise self._file_gone()
        try:
            conn, settings = self._open("reader")
        except (sqlite3.Error, OverflowError) as exc:
            raise self.translate(exc) from exc
        reader = _Reader(conn, settings)
        with self._readers_changed:
            if self.closed:
                conn.close()
                raise StoreClosedError(self.path)
            self._readers.add(reader)
        self._local.reader = reader
        return reader

    def _close_reader(self, reader: _Reader) -> None:
        with self._readers_changed:
            if reader.users == 0 and not reader.is_closed:
                reader.is_closed = True
                reader.conn.close()
            self._readers_changed.notify_all()

    def transaction(self) -> _Transaction:
        """The writer inside ``BEGIN IMMEDIATE``: commit on success, roll back on any error."""
        return _Transaction(self)

    def close(self) -> None:
        """Close every connection; safe while other threads are reading or writing.

        A write in flight finishes first (this waits for the write lock). Reads in
        flight are interrupted and get ``StoreClosedError``; a reader still busy after
        ``CLOSE_WAIT_SECONDS`` is closed by its own thread when it finishes.
        """
        with self._readers_changed:
            if self.closed:
                return
            self.closed = True
            readers = list(self._readers)
        with self.write_lock, contextlib.suppress(sqlite3.Error):
            self.writer.close()
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        own = getattr(self._local, "reader", None)
        with self._readers_changed:
            for reader in readers:
                while not reader.is_closed:
                    if reader is own and reader.users:
                        break  # closing from inside a read: its finally closes it
                    if reader.users == 0:
                        reader.is_closed = True
                        with contextlib.suppress(sqlite3.Error):
                            reader.conn.close()
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break  # its thread closes it when done (reading's finally)
                    # Statements running now stop with "interrupted"; one started just
                    # after is caught by the next round.
                    reader.conn.interrupt()
                    self._readers_changed.wait(min(remaining, 0.005))
            self._readers.clear()

    # -- errors about the file ----------------------------------------------------------
    def translate(self, exc: BaseException) -> BaseException:
        """The framework's error for a sqlite3 error about the file; others unchanged."""
        if self.closed and isinstance(exc, (sqlite3.ProgrammingError, sqlite3.OperationalError)):
            # "Cannot operate on a closed database" or "interrupted" by close().
            return StoreClosedError(self.path)
        limit = 0
        if isinstance(exc, sqlite3.DataError):
            with contextlib.suppress(sqlite3.Error):
                limit = self.writer.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        translated = storage_error(exc, self.path, self.file_path, limit)
        code = getattr(exc, "sqlite_errorcode", None)
        if translated is exc and code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            # A lock held elsewhere past the busy timeout: name the file and the wait
            # (storage_error is not told the timeout).
            return StoreBusyError(self.path, self.busy_timeout_ms / 1000, str(exc))
        return translated


#: The least time a thread waits for another thread of this process to let go of the
#: writer before ``StoreBusyError`` (the busy timeout when it is longer); a module
#: attribute so that a test can shorten it.
IN_PROCESS_WAIT = 30.0

# SQLite keeps the busy timeout in a C int of milliseconds: more wraps to no wait.
_MAX_BUSY_TIMEOUT_MS = 2**31 - 1


def _identity(file_path: str | None) -> tuple[int, int] | None:
    """(device, inode) of the file at ``file_path``; None in memory, (0, 0) when gone."""
    if file_path is None:
        return None
    try:
        found = os.stat(file_path)
    except FileNotFoundError:
        return (0, 0)
    except OSError:
        return None  # cannot look (no permission on a folder on the way): not a sign of loss
    return (found.st_dev, found.st_ino)


def _whole_number(value: object) -> int | None:
    """``value`` as an int when it is a whole number (an int, numpy's; not a bool or a
    float), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _busy_timeout_ms(busy_timeout: object) -> int:
    """``busy_timeout`` (seconds) in milliseconds, checked: a number, finite, 0 or more;
    a longer wait than SQLite can hold is its longest (about 24.8 days), never none."""
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, numbers.Real):
        raise TypeError(
            f"busy_timeout must be a number of seconds (an int or a float), got "
            f"{type(busy_timeout).__name__} {busy_timeout!r:.40}"
        )
    busy_timeout = float(busy_timeout)
    if not busy_timeout >= 0 or busy_timeout == float("inf"):
        raise ValueError(
            f"busy_timeout must be a finite number of seconds, 0 or more (0: fail at once "
            f"when another process holds the file), got {busy_timeout!r}"
        )
    return min(int(busy_timeout * 1000), _MAX_BUSY_TIMEOUT_MS)


def _is_memory(path: str) -> bool:
    if path in ("", ":memory:"):
        return True
    if not path.startswith("file:"):
        return False
    name, _, query = path[5:].partition("?")
    return name in ("", ":memory:") or "mode=memory" in query.split("&")


def file_path_of(path: str) -> str | None:
    """The file system path of a database path or ``file:`` URI; None for memory."""
    if _is_memory(path):
        return None
    if not path.startswith("file:"):
        return path
    from urllib.parse import unquote

    name = path[5:].partition("?")[0].partition("#")[0]
    if name.startswith("//"):  # file://host/path: only an empty host or localhost
        rest = name[2:].partition("/")[2]
        name = "/" + rest
    return unquote(name)


def storage_error(
    exc: BaseException, path: str, file_path: str | None = None, limit: int = 0
) -> BaseException:
    """Turn a sqlite3 error about the file at ``path`` into a ``StorageError`` naming it.

    Errors about the statement (constraints, SQL mistakes) are returned unchanged.
    """
    if isinstance(exc, OverflowError):
        return IntegerRangeError(path)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return exc
    if code == _SQLITE_READONLY_DIRECTORY:
        folder = os.path.dirname(os.path.abspath(file_path or path))
        return ReadOnlyStoreError(path, folder=folder)
    primary = code & 0xFF
    if primary == _SQLITE_READONLY:
        return ReadOnlyStoreError(path)
    if primary == _SQLITE_FULL:
        return StorageFullError(path)
    if primary == _SQLITE_NOTADB:
        return NotADatabaseError(path)
    if primary == _SQLITE_CORRUPT:
        return CorruptDatabaseError(path, str(exc))
    if primary == _SQLITE_TOOBIG:
        return PayloadTooLargeError(path, limit)
    if primary == _SQLITE_CANTOPEN:
        return StorageError(
            path,
            "SQLite cannot open the file (the path may name a folder, or a folder on the "
            "way is not accessible)",
            "Give the path of a database file in a folder this user can write.",
        )
    if primary == _SQLITE_IOERR:
        return StorageError(
            path,
            f"the operating system reported an I/O error ({exc}); the operation was rolled back",
            "Check the disk and the file system holding the file, then retry.",
        )
    return exc
