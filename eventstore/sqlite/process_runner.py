"""Running a process manager on SQLite: state, outbox and timeouts beside its checkpoint.

The manager is registered as a projection whose read model lives in the
store's own file (``SQLiteReadModel(store)``), so each batch's decisions (the
processes' state, the commands to send, the timeouts armed or cancelled) and
the checkpoint commit in one transaction. The commands go to an outbox table
and are sent through the transport after that commit; a crash before sending
leaves them there, and a crash after sending sends them again under the same
ids, which the command side answers with "already processed". Timeouts are
rows with a due time, polled by the runner: firing one (the manager's
``timed_out``, its commands, and the row's deletion) is one transaction too.
Nothing lives in memory only, so a SIGKILL loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from ..core.events import Event
from ..core.headers import COMMAND_ID_HEADER, CORRELATION_ID_HEADER
from ..core.process_managers import Process, ProcessManager, process_command_id
from ..core.projections import ProjectionContext, ProjectionManager
from ..core.responses import TIMEOUT, UNAVAILABLE
from ..core.routing import Route, ServiceBinding
from ..core.transport import Transport
from ..core.upcasting import Upcasters
from .read_model import SQLiteReadModel
from .store import SQLiteEventStore

log = logging.getLogger("eventstore.sqlite.process")

_TABLES = (
    "CREATE TABLE IF NOT EXISTS process_state ("
    " manager TEXT NOT NULL, process_id TEXT NOT NULL, state TEXT NOT NULL,"
    " finished INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL,"
    " PRIMARY KEY (manager, process_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS process_outbox ("
    " command_id TEXT NOT NULL PRIMARY KEY, manager TEXT NOT NULL, process_id TEXT NOT NULL,"
    " step TEXT NOT NULL, command_type TEXT NOT NULL, data BLOB NOT NULL,"
    " created_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS process_timeouts ("
    " manager TEXT NOT NULL, process_id TEXT NOT NULL, step TEXT NOT NULL,"
    " due_at INTEGER NOT NULL, PRIMARY KEY (manager, process_id, step)) WITHOUT ROWID",
)


def _now() -> int:
    return time.time_ns() // 1000


def create_tables(conn: Any) -> None:
    for statement in _TABLES:
        conn.execute(statement)


def _load(conn: Any, manager: ProcessManager, process_id: str, cause: str) -> Process:
    row = conn.execute(
        "SELECT state, finished FROM process_state WHERE manager = ? AND process_id = ?",
        (manager.name, process_id),
    ).fetchone()
    process = Process(manager.name, process_id, cause)
    if row is not None:
        process.state = json.loads(row[0])
        process.finished = bool(row[1])
    return process


def _save(conn: Any, process: Process) -> None:
    now = _now()
    conn.execute(
        "INSERT OR REPLACE INTO process_state VALUES (?, ?, ?, ?, ?)",
        (process.manager, process.id, json.dumps(process.state), int(process.finished), now),
    )
    for sent in process.sent:
        conn.execute(
            "INSERT OR IGNORE INTO process_outbox VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                sent.command_id,
                process.manager,
                process.id,
                sent.step,
                sent.command.DESCRIPTOR.full_name,
                sent.command.SerializeToString(),
                now,
            ),
        )
    for step in process.cancelled:
        conn.execute(
            "DELETE FROM process_timeouts WHERE manager = ? AND process_id = ? AND step = ?",
            (process.manager, process.id, step),
        )
    for timeout in process.scheduled:
        due = now + int(timeout.after.total_seconds() * 1_000_000)
        conn.execute(
            "INSERT OR REPLACE INTO process_timeouts VALUES (?, ?, ?, ?)",
            (process.manager, process.id, timeout.step, due),
        )


class _Projection:
    """The manager seen by the projection runner."""

    def __init__(self, manager: ProcessManager) -> None:
        self.manager = manager
        self.name = f"process:{manager.name}"
        self.event_types = manager.event_type_names

    def reset(self, ctx: ProjectionContext) -> None:
        create_tables(ctx.connection)

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        message = self.manager.decode(event)
        process_id = self.manager.process_id(event, message)
        if process_id is None:
            return
        process = _load(ctx.connection, self.manager, process_id, event.event_id)
        if process.finished:
            return
        self.manager.react(process, event, message)
        if process.state or process.sent or process.scheduled:
            _save(ctx.connection, process)  # else: an event of no process of ours


class ProcessRunner:
    """Feeds a process manager from ``store``'s log and sends its commands over ``transport``.

    ``routes`` name the subject and message class of each command (the
    generated ``<Service>Server`` bindings or their routes); by default they are
    read from the transport's router (``InProcessTransport``). ``upcasters``
    upcast each event before the manager sees it, as for projections. ``drain()``
    works until nothing is left to decide or send and no timeout is due;
    ``await run()`` keeps going until ``stop()``.
    """

    def __init__(
        self,
        store: SQLiteEventStore,
        manager: ProcessManager,
        transport: Transport,
        *,
        routes: Iterable[ServiceBinding | Route] | None = None,
        poll_interval: float = 0.2,
        batch_size: int = 100,
        upcasters: Upcasters | None = None,
    ) -> None:
        self.store = store
        self.manager = manager
        self.transport = transport
        self.poll_interval = poll_interval
        self.read_model = SQLiteReadModel(store)
        self.projections = ProjectionManager(store, batch_size=batch_size, upcasters=upcasters)
        self.projections.register(_Projection(manager), read_model=self.read_model)
        self._routes = self._route_table(routes)
        self._stopping = False
        with store._db.transaction() as conn:
            create_tables(conn)

    def _route_table(self, routes: Iterable[ServiceBinding | Route] | None) -> dict[str, Route]:
        found: list[Route] = []
        if routes is None:
            router = getattr(self.transport, "router", None)
            if router is None:
                raise ValueError(
                    "ProcessRunner needs routes= (the generated <Service>Server bindings) for a "
                    "transport without a router: they name each command's subject"
                )
            found = [r for s in router.subjects if (r := router.route(s)) is not None]
        else:
            for item in routes:
                found.extend([item] if isinstance(item, Route) else item.routes)
        return {r.request_type.DESCRIPTOR.full_name: r for r in found if r is not None}

    # -- one pass ------------------------------------------------------------------------------
    def decide(self) -> int:
        """Hand the new events to the manager; returns how many it handled."""
        return sum(self.projections.catch_up().values())

    def fire_timeouts(self, now: int | None = None) -> int:
        """Fire every timeout that is due, each in its own transaction; returns how many."""
        fired = 0
        cutoff = _now() if now is None else now
        while True:
            with self.store._db.transaction() as conn:
                row = conn.execute(
                    "SELECT process_id, step FROM process_timeouts WHERE manager = ? "
                    "AND due_at <= ? ORDER BY due_at LIMIT 1",
                    (self.manager.name, cutoff),
                ).fetchone()
                if row is None:
                    return fired
                process_id, step = row
                conn.execute(
                    "DELETE FROM process_timeouts "
                    "WHERE manager = ? AND process_id = ? AND step = ?",
                    (self.manager.name, process_id, step),
                )
                process = _load(conn, self.manager, process_id, f"timeout:{process_id}:{step}")
                if not process.finished:
                    self.manager.timed_out(process, step)
                    _save(conn, process)
            fired += 1

    def pending_commands(self) -> list[tuple[str, str, str, str, bytes]]:
        """The outbox: (command id, process id, step, command type, data), oldest first."""
        with self.read_model.reading() as conn:
            rows = conn.execute(
                "SELECT command_id, process_id, step, command_type, data FROM process_outbox "
                "WHERE manager = ? ORDER BY created_at, rowid",
                (self.manager.name,),
            ).fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def send_pending(self) -> int:
        """Send the outbox's commands; returns how many were answered (ok or refused)."""
        answered = 0
        for command_id, process_id, step, command_type, data in self.pending_commands():
            route = self._routes.get(command_type)
            if route is None:
                raise ValueError(
                    f"process manager {self.manager.name!r} sent a {command_type} but no route "
                    f"serves it; known: {sorted(self._routes)}. Pass its service in routes=."
                )
            command = route.request_type.FromString(data)
            response = await self.transport.request(
                route.subject,
                command,
                {COMMAND_ID_HEADER: command_id, CORRELATION_ID_HEADER: process_id},
            )
            error = getattr(response, "error", None)
            if error is not None and error.code in (UNAVAILABLE, TIMEOUT):
                log.warning("command %s of %s not delivered: %s", command_id, process_id, error)
                continue  # the wire failed: send again on the next pass, same id
            with self.store._db.transaction() as conn:
                gone = conn.execute(
                    "DELETE FROM process_outbox WHERE command_id = ?", (command_id,)
                ).rowcount
                if gone and error is not None:
                    process = _load(conn, self.manager, process_id, f"rejected:{command_id}")
                    if not process.finished:
                        self.manager.rejected(process, step, error)
                        _save(conn, process)
            answered += 1
        return answered

    async def drain_async(self, *, max_passes: int = 10_000) -> None:
        """Decide, fire due timeouts and send until a pass finds nothing to do."""
        for _ in range(max_passes):
            busy = await asyncio.to_thread(self.decide)
            busy += await asyncio.to_thread(self.fire_timeouts)
            busy += await self.send_pending()
            if not busy:
                return

    def drain(self) -> None:
        asyncio.run(self.drain_async())

    async def run(self) -> None:
        """Drain, then poll every ``poll_interval`` seconds until ``stop()``."""
        while not self._stopping:
            await self.drain_async()
            await asyncio.sleep(self.poll_interval)

    def stop(self) -> None:
        self._stopping = True

    def state(self, process_id: str) -> dict[str, Any] | None:
        """The stored state of one process (None when it never started)."""
        with self.read_model.reading() as conn:
            row = conn.execute(
                "SELECT state FROM process_state WHERE manager = ? AND process_id = ?",
                (self.manager.name, process_id),
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def timeouts(self) -> list[tuple[str, str, int]]:
        """The armed timeouts: (process id, step, due at in microseconds)."""
        with self.read_model.reading() as conn:
            rows = conn.execute(
                "SELECT process_id, step, due_at FROM process_timeouts WHERE manager = ? "
                "ORDER BY due_at",
                (self.manager.name,),
            ).fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]


__all__ = ["ProcessRunner", "create_tables", "process_command_id"]
