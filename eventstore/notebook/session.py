"""The notebook session: the one place where magics and widgets find the store.

A kernel has one session. It owns the event store that ``%es_store`` opened
(and, later, the embedded NATS server that ``%es_nats`` starts), knows the
message classes the notebook has generated or registered, and closes what it
owns when the kernel stops, so a SQLite file is checkpointed and released
instead of being left with a write-ahead log behind it.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from ..core.errors import redact_url
from ..core.event_types import EventTypeRegistry
from ..core.repository import Repository

if TYPE_CHECKING:
    from ..sqlite import SQLiteEventStore

MEMORY = ":memory:"


class NoStoreError(RuntimeError):
    """A magic or widget needed the session's store before one was opened."""

    def __init__(self, needed_by: str) -> None:
        self.needed_by = needed_by
        super().__init__(
            f"{needed_by} needs an event store, and this notebook session has none open. "
            "Run %es_store (in memory) or %es_store PATH (a SQLite file or store URL) first."
        )


class NotebookSession:
    """The store and message classes a notebook works with, closed when the kernel stops.

    Other resources (an embedded NATS server, a projection manager) join with
    :meth:`own`, so that they are stopped with the store, newest first.
    """

    def __init__(self) -> None:
        self._store: SQLiteEventStore | None = None
        #: Where the store is: a file's full path, ``:memory:``, or its URL with the
        #: password shown as ``***``. Safe to print: a notebook's output is saved.
        self.store_path: str | None = None
        # The location as given to open_store, password and all: for opening it again,
        # never for showing.
        self._store_location: str | None = None
        self.message_types = EventTypeRegistry()
        #: What each ``%%es_generate --name NAME`` run bound, so a re-run can replace it.
        #: (Each generated module records it too, for a session ``%reload_ext`` made anew.)
        self.generated: dict[str, dict[str, Any]] = {}
        self._closers: list[tuple[str, Callable[[], object]]] = []
        self.closed = False
        # atexit holds only a weak reference: a session dropped by a test
        # (or by a reloaded extension) is not kept alive until exit.
        ref = weakref.ref(self)
        atexit.register(_close_if_alive, ref)

    # -- the store ---------------------------------------------------------------
    @property
    def store(self) -> SQLiteEventStore | None:
        """The open store, or None before ``open_store``."""
        return self._store

    def require_store(self, needed_by: str) -> SQLiteEventStore:
        if self._store is None or self._store.closed:
            raise NoStoreError(needed_by)
        return self._store

    def open_store(self, path: str | os.PathLike[str] = MEMORY) -> SQLiteEventStore:
        """Open the session's store, closing the one opened before (a notebook has one).

        ``path`` is a file path, ``:memory:`` or a store URL (``sqlite:///bank.db``,
        ``file:/data/bank.db?mode=ro``; see ``eventstore.open_store``).
        """
        from ..stores import open_store, url_scheme

        target = os.fspath(path)
        if target != MEMORY and url_scheme(target) is None:
            target = os.path.abspath(os.path.expanduser(target))
            folder = os.path.dirname(target)
            if not os.path.isdir(folder):
                raise FileNotFoundError(
                    f"cannot open event store {target!r}: folder {folder!r} does not exist. "
                    "Create the folder first, or give a path in an existing one."
                )
        store: SQLiteEventStore = open_store(target)
        previous = self._store
        self._store = store
        # A URL (sqlite:///bank.db) names a file relative to the working folder, and the
        # store keeps it as given: the session promises the full path. A server's URL
        # may hold a password, which store_path (shown by repr, saved in outputs) hides.
        stored = str(store.path)
        self._store_location = target
        self.store_path = (
            redact_url(target)
            if stored == MEMORY or url_scheme(stored)
            else os.path.abspath(stored)
        )
        self.closed = False
        if previous is not None and not previous.closed:
            previous.close()
        return store

    # -- message classes -----------------------------------------------------------
    def register(self, *message_classes: type[Message]) -> None:
        """Make payloads of these types decodable in ``%es_events`` and the widgets.

        A class registered again under the same full name replaces the earlier
        one (a re-run generation cell makes new classes for the same names).
        """
        for cls in message_classes:
            self.message_types.register(cls)

    def known_types(self, namespace: Mapping[str, Any] | None = None) -> EventTypeRegistry:
        """The session's classes plus those of every Repository in ``namespace``.

        A repository the user built already holds its event classes, so the
        event table can decode them without asking the user to register them twice.
        """
        registry = EventTypeRegistry(self.message_types.values())
        for value in (namespace or {}).values():
            if isinstance(value, Repository):
                for cls in value.event_types.values():
                    if cls.DESCRIPTOR.full_name not in registry:
                        registry.register(cls)
        return registry

    # -- lifetime ------------------------------------------------------------------
    def own(self, name: str, close: Callable[[], object]) -> None:
        """Have ``close`` called when the session closes (newest first)."""
        self._closers.append((name, close))

    def close(self) -> None:
        """Stop everything the session owns, then close the store. Safe to call twice."""
        errors: list[str] = []
        while self._closers:
            name, closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # one failing resource must not keep the store open
                errors.append(f"{name}: {exc!r}")
        if self._store is not None and not self._store.closed:
            self._store.close()
        self.closed = True
        if errors:
            raise RuntimeError(
                "the notebook session closed its store, but stopping these failed: "
                + "; ".join(errors)
            )

    def __repr__(self) -> str:
        where = self.store_path if self._store is not None else "no store"
        return f"<NotebookSession {where}, {len(self.message_types)} message types>"


def _close_if_alive(ref: weakref.ref[NotebookSession]) -> None:
    session = ref()
    if session is not None:
        session.close()


_SESSION_ATTR = "_eventstore_session"


def session_for(shell: Any) -> NotebookSession:
    """The session of an IPython shell, made on first use."""
    session: NotebookSession | None = getattr(shell, _SESSION_ATTR, None)
    if session is None:
        session = NotebookSession()
        setattr(shell, _SESSION_ATTR, session)
    return session


def current_session() -> NotebookSession:
    """The running kernel's session (for widgets made in a notebook cell)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError(
            "current_session() works inside IPython or Jupyter only; elsewhere make a "
            "NotebookSession() yourself and pass it around"
        )
    return session_for(shell)
