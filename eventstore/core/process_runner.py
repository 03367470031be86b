"""The store-independent half of a process manager's runner: the loop, the outbox, timeouts.

A runner feeds a ``ProcessManager`` from a store's log through the projection
runner, so each batch's decisions (the processes' state, the commands to send,
the timeouts armed or cancelled) commit with the checkpoint in the read
model's transaction. Commands wait in an outbox table and are sent through the
transport after that commit; a crash before sending leaves them there, and a
crash after sending sends them again under the same ids (``uuid5`` of the
manager, the cause and the step), which the command side answers with
"already processed". Timeouts are rows with a due time, polled by the runner:
firing one (the manager's ``timed_out``, its commands, the row's deletion) is
one transaction too. Nothing lives in memory only, so a SIGKILL loses nothing.

Several runners of one manager share its outbox, so each command is claimed
before it is sent: a claim is a lease (``claim_lease``) written on the row,
and while it holds no other runner sends that command. Its answer is filed
(``rejected`` for a refusal, the row deleted) only while no other runner has
claimed the row since, so the process sees the answer of the last send, never
a refusal filed beside a later send that was applied (docs/decisions.md,
"Outbox commands are claimed before they are sent").

What differs between stores is only SQL: each adapter gives a
``ProcessTables`` (its dialect, its transactions) and a read model, and
subclasses ``ProcessRunnerBase`` (``eventstore.sqlite.ProcessRunner``,
``eventstore.postgres.ProcessRunner``). This module is pure: no driver is
imported here (docs/decisions.md, "One process-runner core, SQL in the
adapters").

Tenancy: a process belongs to the tenant of the event that started it (its
metadata's ``tenant_id``). Its rows are keyed ``<tenant>::<process id>``, so two
tenants' processes with one correlation id never meet; ``react``,
``timed_out`` and ``rejected`` run inside ``with_tenant(tenant)``; its commands
carry the tenant (``Es-Tenant-Id``) and are sent as the service principal
``process-manager:<name>`` acting for that tenant only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import EventStoreError
from .events import Event
from .headers import COMMAND_ID_HEADER, CORRELATION_ID_HEADER, TENANT_ID_HEADER
from .identity import Principal
from .ports import EventSource
from .process_managers import Process, ProcessManager
from .projection import ProjectionContext
from .projections import ProjectionManager, ProjectionStatus
from .projections.read_models import ReadModel
from .projections.status import ProjectionFailure
from .responses import TIMEOUT, UNAVAILABLE
from .routing import Route, ServiceBinding
from .tenancy import SEPARATOR, with_tenant
from .transport import Transport
from .upcasting import Upcasters

log = logging.getLogger("eventstore.process")


class ProcessManagerFailedError(EventStoreError):
    """The manager's ``react`` (or its reading of the log) failed on an event, so its
    decisions stop there until ``resume``: ``drain`` and ``run`` raise it rather than
    going on as if nothing were left to decide (every later event waits behind it)."""

    def __init__(self, manager: str, failure: ProjectionFailure) -> None:
        self.manager = manager
        self.failure = failure
        projection = f"process:{manager}"
        super().__init__(
            f"process manager {manager!r} stopped deciding: {failure.describe()} Commands "
            f"decided before it were sent; timeouts wait. Fix the manager, then call "
            f"runner.projections.resume({projection!r}) and drain again."
        )


#: The roles of the service principal a runner sends its commands as, unless told otherwise.
DEFAULT_PROCESS_ROLES: tuple[str, ...] = ("process-manager",)

#: How long (seconds) a runner's claim on an outbox command holds, unless told otherwise:
#: above the request timeouts of the network transports (NATS 5 s, HTTP 10 s).
DEFAULT_CLAIM_LEASE = 30.0

#: How many outbox commands one transaction claims (one commit per page, not per command).
CLAIM_PAGE = 32


def now_micros() -> int:
    return time.time_ns() // 1000


def process_key(tenant: str, process_id: str) -> str:
    """The key of a process in the runner's tables: ``<tenant>::<id>``, or the id alone.

    A process of no tenant whose id holds ``::`` (a correlation id a caller chose,
    ``acme::c1``) is keyed ``::<id>``, so it can never be tenant ``acme``'s process
    ``c1``: a tenant id is never empty, so no tenant's key starts with ``::``.
    """
    if tenant:
        return f"{tenant}{SEPARATOR}{process_id}"
    return f"{SEPARATOR}{process_id}" if SEPARATOR in process_id else process_id


def plain_id(key: str, tenant: str) -> str:
    """The process id of ``key`` in ``tenant`` (``process_key``'s inverse)."""
    if tenant:
        return key[len(tenant) + len(SEPARATOR) :]
    return key.removeprefix(SEPARATOR)


def service_principal(manager: str, tenant: str, roles: Iterable[str]) -> Principal:
    """The principal a process manager acts as: ``process-manager:<name>``, in one tenant."""
    return Principal(f"process-manager:{manager}", tuple(roles), (tenant,) if tenant else ())


@dataclass(frozen=True, slots=True)
class StoredProcess:
    """A process row: its state (JSON), whether it finished, and its tenant."""

    state: str
    finished: bool
    tenant: str


@dataclass(frozen=True, slots=True)
class OutboxCommand:
    """A command waiting in the outbox (``process_key`` is the tables' key)."""

    command_id: str
    process_key: str
    step: str
    command_type: str
    data: bytes
    tenant: str


class ProcessTables(Protocol):
    """One store's SQL for a runner's tables; ``conn`` is that store's connection.

    ``transaction()`` opens a write transaction on the read model's database
    (the one its checkpoints live in); ``reading()`` a connection for queries.
    Each method is one statement of the adapter's dialect.
    """

    def transaction(self) -> AbstractContextManager[Any]: ...

    def reading(self) -> AbstractContextManager[Any]: ...

    def create(self, conn: Any) -> None:
        """Create the tables when missing (idempotent; may run in two processes at once)."""
        ...

    def load(self, conn: Any, manager: str, key: str) -> StoredProcess | None:
        """The process's row, locked until the transaction ends where the store locks rows.

        Every transaction that changes a process loads it first, so they take
        turns on it and lock its row before its timeouts and outbox rows (one
        order everywhere: no deadlock between runners).
        """
        ...

    def save(self, conn: Any, manager: str, key: str, process: StoredProcess, now: int) -> None: ...

    def queue(self, conn: Any, manager: str, command: OutboxCommand, now: int) -> None:
        """Add ``command`` to the outbox unless its id is there already."""
        ...

    def arm(self, conn: Any, manager: str, key: str, step: str, due_at: int) -> None:
        """Arm (or re-arm) the timeout ``step`` of a process."""
        ...

    def disarm(self, conn: Any, manager: str, key: str, step: str) -> None: ...

    def due(self, conn: Any, manager: str, cutoff: int) -> list[tuple[str, str, int]]:
        """The (key, step, due at) of the timeouts due at ``cutoff``, soonest first (not
        locked: see ``claim``)."""
        ...

    def claim(self, conn: Any, manager: str, key: str, step: str, due_at: int) -> bool:
        """Delete the timeout if it is still armed for ``due_at``; False when another runner
        fired it, or a decision cancelled or re-armed it, meanwhile."""
        ...

    def pending(self, conn: Any, manager: str) -> list[OutboxCommand]:
        """The outbox of ``manager``, oldest first (claimed or not)."""
        ...

    def claim_command(self, conn: Any, command_id: str, lease: int) -> int | None:
        """Claim an outbox command for ``lease`` microseconds, unless a claim on it holds.

        Returns the claim: the time it ends, on the database's clock where it has
        one (PostgreSQL's), else the runner's. A row is claimed again only once its
        claim has ended, so each claim of a row ends later than the one before and
        tells them apart. None when another runner holds it, or it is gone (answered).
        """
        ...

    def release_command(self, conn: Any, command_id: str, claim: int) -> None:
        """End ``claim`` early (the command did not reach a service); no-op if it is not
        the row's claim any more."""
        ...

    def unqueue(self, conn: Any, command_id: str, claim: int) -> bool:
        """Delete an answered command if the row still holds ``claim``; False when another
        runner claimed it since (its send, the later one, is answered instead) or it is gone."""
        ...

    def timeouts(self, conn: Any, manager: str) -> list[tuple[str, str, int]]: ...


def load_process(
    tables: ProcessTables, conn: Any, manager: ProcessManager, key: str, cause: str
) -> Process:
    """The process stored under ``key`` (a new one, of no tenant, when none is)."""
    return _process_of(tables.load(conn, manager.name, key), manager, key, cause)


def _process_of(
    stored: StoredProcess | None, manager: ProcessManager, key: str, cause: str
) -> Process:
    if stored is None:
        return Process(manager.name, key, cause)
    tenant = stored.tenant
    process = Process(manager.name, plain_id(key, tenant), cause, tenant=tenant)
    process.state = json.loads(stored.state)
    process.finished = stored.finished
    return process


def timeout_cause(key: str, step: str, due_at: int) -> str:
    """The cause of one firing of a timeout: ``timeout:<process key>:<step>@<due at>``.

    A re-armed timeout fires again, and that firing is a new decision: its
    commands need ids of their own, or the command side (and the outbox)
    would take them for the first firing's. The due time it was armed for
    tells the firings apart and is stored with the timeout, so a firing that
    is decided again (a crash before its transaction committed, a restart)
    has the same cause, hence the same command ids. A counter could not live
    in the timeout's row: firing deletes the row, and the re-arm starts afresh.
    """
    return f"timeout:{key}:{step}@{due_at}"


def save_process(
    tables: ProcessTables, conn: Any, process: Process, *, fired_at: int | None = None
) -> None:
    """Write what ``process`` decided: its state, its commands, its timeouts.

    The delays of the timeouts it arms count from ``fired_at`` when a firing
    decided (the time ``fire_timeouts`` fires at, which a caller may set
    ahead of the clock), else from the clock.
    """
    now = now_micros()
    armed_from = now if fired_at is None else fired_at
    key = process_key(process.tenant, process.id)
    stored = StoredProcess(json.dumps(process.state), process.finished, process.tenant)
    tables.save(conn, process.manager, key, stored, now)
    for sent in process.sent:
        command = OutboxCommand(
            sent.command_id,
            key,
            sent.step,
            sent.command.DESCRIPTOR.full_name,
            sent.command.SerializeToString(),
            process.tenant,
        )
        tables.queue(conn, process.manager, command, now)
    for step in process.cancelled:
        tables.disarm(conn, process.manager, key, step)
    for timeout in process.scheduled:
        due = armed_from + int(timeout.after.total_seconds() * 1_000_000)
        tables.arm(conn, process.manager, key, timeout.step, due)


class ProcessProjection:
    """The manager seen by the projection runner: each event decided in the batch's
    transaction (``ctx.connection``), in the event's tenant."""

    def __init__(self, manager: ProcessManager, tables: ProcessTables) -> None:
        self.manager = manager
        self.tables = tables
        self.name = f"process:{manager.name}"
        self.event_types = manager.event_type_names
        #: Why ``ProjectionManager.rebuild`` refuses it (see there).
        self.rebuild_refusal = (
            "a process manager's state is not the log's alone: the answers to its commands "
            "(a refusal leaves no event, and a command refused then may be applied now) and "
            "the times its timeouts fired are not events, so replaying the log into its "
            "final state would decide again and send commands it never sent. Leave it to "
            "catch up (resume(name) after a failure); to start over on purpose, stop its "
            "runners and drop its rows (process_state, process_outbox, process_timeouts of "
            f"manager {manager.name!r}) and its checkpoint {self.name!r}"
        )

    def reset(self, ctx: ProjectionContext) -> None:
        self.tables.create(ctx.connection)

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        message = self.manager.decode(event)
        process_id = self.manager.process_id(event, message)
        if process_id is None:
            return
        key = process_key(ctx.tenant, process_id)
        stored = self.tables.load(ctx.connection, self.manager.name, key)
        process = _process_of(stored, self.manager, key, event.event_id)
        if process.finished:
            return
        # The handler already runs in the event's tenant (handle_events).
        process.id, process.tenant = process_id, ctx.tenant
        self.manager.react(process, event, message)
        # A stored process is saved whatever it decided (an emptied state, a finish, a
        # cancel); an event that started nothing leaves no row.
        decided = process.sent or process.scheduled or process.cancelled or process.finished
        if stored is not None or process.state or decided:
            save_process(self.tables, ctx.connection, process)


def route_table(
    transport: Transport, routes: Iterable[ServiceBinding | Route] | None
) -> dict[str, Route]:
    """Each command type's route: from ``routes``, else from the transport's router."""
    found: list[Route] = []
    if routes is None:
        router = getattr(transport, "router", None)
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


def _checked_lease(claim_lease: float | None, transport: Transport) -> float:
    """``claim_lease``, refused when it is no positive time or would run out before the
    transport gives up on a request (a second runner would send the command meanwhile).
    None (not given): ``DEFAULT_CLAIM_LEASE``, or twice the transport's request timeout
    when that is longer."""
    timeout = getattr(transport, "timeout", None)
    if claim_lease is None:
        if isinstance(timeout, (int, float)) and 0 < timeout < float("inf"):
            return max(DEFAULT_CLAIM_LEASE, 2.0 * timeout)
        return DEFAULT_CLAIM_LEASE
    if not isinstance(claim_lease, (int, float)) or not 0 < claim_lease < float("inf"):
        raise ValueError(
            f"claim_lease must be a positive number of seconds, got {claim_lease!r}: it is how "
            f"long a runner's claim on an outbox command holds (default {DEFAULT_CLAIM_LEASE:g})"
        )
    if isinstance(timeout, (int, float)) and timeout >= claim_lease:
        raise ValueError(
            f"claim_lease={claim_lease:g} s is not longer than the transport's request timeout "
            f"({timeout:g} s): a claim could run out while a request is still waiting for its "
            "answer, and another runner would send the same command meanwhile. Pass a "
            f"claim_lease above {timeout:g} s (or a shorter transport timeout)."
        )
    return float(claim_lease)


def _accepts_principal(transport: Transport) -> bool:
    try:
        return "principal" in inspect.signature(transport.request).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin or C callable
        return False


class ProcessRunnerBase(ABC):
    """Feeds a process manager from a store's log and sends its commands over ``transport``.

    ``routes`` name the subject and message class of each command (the
    generated ``<Service>Server`` bindings or their routes); by default they are
    read from the transport's router (``InProcessTransport``). ``upcasters``
    upcast each event before the manager sees it, as for projections.
    ``roles`` are the roles of the service principal the commands are sent as
    (``process-manager:<name>``, acting for the triggering event's tenant); a
    transport that takes ``principal=`` (in process) gets it with each request,
    a network transport proves its own credentials and asks for the tenant in
    ``Es-Tenant-Id``. The events come from the store's log, or from ``source=``:
    any ``EventSource`` with the store's positions, such as a ``NatsEventBus``
    the store is relayed to; the state, outbox, timeouts and checkpoint stay in
    the store either way. ``claim_lease`` (seconds; default 30, or twice the
    transport's ``timeout`` when that is longer) is how long a claim on an outbox
    command holds: while it does, no other runner sends that command (see
    ``send_pending``); one given must be above the transport's request timeout. An adapter's runner
    gives its read model (whose transaction the decisions join) and its SQL
    (``_read_model``, ``_tables``). ``drain()`` works until nothing is left to
    decide or send and no timeout is due; ``await run()`` keeps going until
    ``stop()``.
    """

    def __init__(
        self,
        store: Any,
        manager: ProcessManager,
        transport: Transport,
        *,
        routes: Iterable[ServiceBinding | Route] | None = None,
        poll_interval: float = 0.2,
        batch_size: int = 100,
        upcasters: Upcasters | None = None,
        roles: Iterable[str] = DEFAULT_PROCESS_ROLES,
        source: EventSource | None = None,
        claim_lease: float | None = None,
    ) -> None:
        self.claim_lease = _checked_lease(claim_lease, transport)
        self._held: set[str] = set()  # claimed by another runner in the last pass
        self._timed_out: set[str] = set()  # sent by this runner, no answer in time
        self.store = store
        read_model = self._read_model(store)
        tables = self._tables(read_model)
        self.manager = manager
        self.transport = transport
        self.poll_interval = poll_interval
        self.read_model = read_model
        self.tables = tables
        self.roles = tuple(roles)
        self.projections = ProjectionManager(
            store if source is None else source, batch_size=batch_size, upcasters=upcasters
        )
        self.projections.register(ProcessProjection(manager, tables), read_model=read_model)
        self._routes = route_table(transport, routes)
        self._sends_principal = _accepts_principal(transport)
        self._stopping = False
        with tables.transaction() as conn:
            tables.create(conn)

    # -- what each adapter gives: its read model (the transaction) and its SQL ------------------
    @abstractmethod
    def _read_model(self, store: Any) -> ReadModel:
        """The read model whose transaction a batch's decisions and checkpoint share."""

    @abstractmethod
    def _tables(self, read_model: Any) -> ProcessTables:
        """The adapter's SQL for the state, outbox and timeout tables, on ``read_model``."""

    # -- one pass ------------------------------------------------------------------------------
    def decide(self) -> int:
        """Hand the new events to the manager; returns how many it handled."""
        return sum(self.projections.catch_up().values())

    def fire_timeouts(self, now: int | None = None) -> int:
        """Fire the timeouts due at ``now`` (default: the clock), each in its own
        transaction; returns how many fired.

        The due timeouts are listed once, at the start, so each fires at most
        once per call: one that ``timed_out`` re-arms is due its delay after
        ``now`` (not after the clock, which ``now`` may be ahead of) and waits
        for a later call. Each firing's commands take their ids from its cause
        (``timeout_cause``), so every firing of a re-armed timeout sends its own.
        """
        fired = 0
        cutoff = now_micros() if now is None else now
        name = self.manager.name
        with self.tables.reading() as conn:
            due = self.tables.due(conn, name, cutoff)
        for key, step, due_at in due:
            with self.tables.transaction() as conn:
                cause = timeout_cause(key, step, due_at)
                process = load_process(self.tables, conn, self.manager, key, cause)
                if not self.tables.claim(conn, name, key, step, due_at):
                    continue  # fired, cancelled or re-armed by someone else meanwhile
                if not process.finished:
                    with with_tenant(process.tenant):
                        self.manager.timed_out(process, step)
                    # Never re-armed for the instant that just fired (a zero delay fired
                    # at its due time): that firing would repeat this one's cause and ids.
                    save_process(self.tables, conn, process, fired_at=max(cutoff, due_at + 1))
            fired += 1
        return fired

    def pending_commands(self) -> list[tuple[str, str, str, str, bytes]]:
        """The outbox: (command id, process key, step, command type, data), oldest first.

        The process key is ``<tenant>::<process id>`` for a process of a tenant.
        """
        with self.tables.reading() as conn:
            rows = self.tables.pending(conn, self.manager.name)
        return [(c.command_id, c.process_key, c.step, c.command_type, c.data) for c in rows]

    def _request_for(self, command: OutboxCommand) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers and keyword arguments of one outbox command's request."""
        tenant = command.tenant
        headers = {
            COMMAND_ID_HEADER: command.command_id,
            CORRELATION_ID_HEADER: plain_id(command.process_key, tenant),
        }
        if tenant:
            headers[TENANT_ID_HEADER] = tenant
        extra: dict[str, Any] = {}
        if self._sends_principal:
            extra["principal"] = service_principal(self.manager.name, tenant, self.roles)
        return headers, extra

    async def send_pending(self) -> int:
        """Send the outbox's commands; returns how many were answered (ok or refused).

        Each command is claimed first (for ``claim_lease``) and sent only if the claim
        is this runner's: one held by another runner (or a runner that died mid-send)
        leaves the command to that runner, or to any runner once the claim ends. An
        answer is filed only while the row holds this runner's claim. A command that
        did not reach a service (``UNAVAILABLE``) is released for the next pass; one
        whose answer did not come in time (``TIMEOUT``, it may be running still) keeps
        its claim to the end, so no copy is sent again while the first may yet apply.

        Claims are taken ``CLAIM_PAGE`` commands to a transaction (one commit, on SQLite
        one fsync, per page rather than per command).
        """
        answered = 0
        with self.tables.reading() as conn:
            pending = self.tables.pending(conn, self.manager.name)
        self._held = set()
        for first in range(0, len(pending), CLAIM_PAGE):
            page = pending[first : first + CLAIM_PAGE]
            # The claims end no sooner than ``lease`` after this instant, on any clock.
            ends_by = time.monotonic() + self.claim_lease
            claims = await asyncio.to_thread(self._claim_page, [c.command_id for c in page])
            for outgoing, claim in zip(page, claims, strict=True):
                if claim is None:
                    # Another runner is sending it (or one that died: its claim runs out),
                    # or has answered it meanwhile; drain waits for the first two.
                    if outgoing.command_id not in self._timed_out:
                        self._held.add(outgoing.command_id)
                    continue
                answered += await self._send(outgoing, claim, ends_by)
        return answered

    async def _send(self, outgoing: OutboxCommand, claim: int, ends_by: float) -> int:
        """Send one claimed command; 1 when it was answered (ok or refused), else 0."""
        route = self._routes.get(outgoing.command_type)
        if route is None:
            raise ValueError(
                f"process manager {self.manager.name!r} sent a {outgoing.command_type} but "
                f"no route serves it; known: {sorted(self._routes)}. Pass its service in "
                "routes=."
            )
        if time.monotonic() >= ends_by:
            # Paused for the whole lease between the claim and the send: another runner
            # may be sending it now, so this one does not (the next pass claims it again).
            log.warning(
                "the claim on command %s of %s ran out before it was sent (claim_lease "
                "%g s); left for the next pass",
                outgoing.command_id,
                outgoing.process_key,
                self.claim_lease,
            )
            return 0
        command = route.request_type.FromString(outgoing.data)
        headers, extra = self._request_for(outgoing)
        try:
            response = await self.transport.request(  # type: ignore[call-arg]
                route.subject, command, headers, **extra
            )
        except BaseException:
            # Raised or cancelled here, in this runner (a lost connection, a wait_for, a
            # Ctrl-C): it waits for no answer any more, so its claim goes, and its next pass
            # sends the command again (same id) instead of waiting out the lease. Released
            # at once, on this thread: a task being cancelled cannot await more.
            with contextlib.suppress(Exception):
                self._release(outgoing.command_id, claim)
            raise
        error = getattr(response, "error", None)
        if error is not None and error.code in (UNAVAILABLE, TIMEOUT):
            log.warning(
                "command %s of %s not delivered: %s",
                outgoing.command_id,
                outgoing.process_key,
                error,
            )
            if error.code == UNAVAILABLE:  # it reached no service: send again next pass
                await asyncio.to_thread(self._release, outgoing.command_id, claim)
            else:  # its claim holds to the end: drain does not wait for this runner's own
                self._timed_out.add(outgoing.command_id)
            return 0  # sent again under the same id, by any runner
        self._timed_out.discard(outgoing.command_id)
        await asyncio.to_thread(self._answered, outgoing, error, claim)
        return 1

    def _claim_page(self, command_ids: list[str]) -> list[int | None]:
        with self.tables.transaction() as conn:
            return [
                self.tables.claim_command(conn, command_id, self._lease_micros)
                for command_id in command_ids
            ]

    def _release(self, command_id: str, claim: int) -> None:
        with self.tables.transaction() as conn:
            self.tables.release_command(conn, command_id, claim)

    @property
    def _lease_micros(self) -> int:
        return max(1, int(self.claim_lease * 1_000_000))

    def _answered(self, outgoing: OutboxCommand, error: Any, claim: int) -> None:
        """Take an answered command out of the outbox; a refusal goes to ``rejected``.

        Only while the row still holds ``claim``: if it ran out and another runner
        claimed the command since, that runner's send came later and its answer is
        the one that counts (a success is final on the command side: a refusal now
        cannot undo it), so this one is dropped.
        """
        cause = f"rejected:{outgoing.command_id}"
        with self.tables.transaction() as conn:
            # The process first (its row locked), then its outbox row: the order of every
            # transaction that changes a process.
            process = load_process(self.tables, conn, self.manager, outgoing.process_key, cause)
            if not self.tables.unqueue(conn, outgoing.command_id, claim):
                log.warning(
                    "the answer to command %s of %s came after its claim ended and another "
                    "runner claimed it (or its row is gone): that runner's answer counts, this "
                    "one (%s) is dropped. "
                    "Raise claim_lease (%g s) above the transport's request timeout.",
                    outgoing.command_id,
                    outgoing.process_key,
                    "ok" if error is None else error.code,
                    self.claim_lease,
                )
                return
            if error is not None and not process.finished:
                with with_tenant(process.tenant):
                    self.manager.rejected(process, outgoing.step, error)
                save_process(self.tables, conn, process)

    async def drain_async(self, *, max_passes: int = 10_000) -> None:
        """Decide, fire due timeouts and send until a pass finds nothing to do.

        Raises ``ProcessManagerFailedError`` when the manager failed on an event (its
        projection is FAILED): its later events wait behind that one until ``resume``.
        """
        waited = False
        for _ in range(max_passes):
            busy = await asyncio.to_thread(self.decide)
            failure = self._failure()
            if failure is not None:
                # What was decided before the failing event is committed: send it. No
                # timeout fires: the event that would cancel one may be the stuck one.
                await self.send_pending()
                raise ProcessManagerFailedError(self.manager.name, failure)
            busy += await asyncio.to_thread(self.fire_timeouts)
            busy += await self.send_pending()
            if busy:
                continue
            if not self._held or not await asyncio.to_thread(self._still_held):
                return
            # Commands another runner claimed (a live one sending them, or one that died
            # mid-send, whose claim runs out within claim_lease): "nothing left to send"
            # is not true yet, so wait for their answers or their claims' end.
            if not waited:
                log.info(
                    "drain of %s waits for %d command(s) another runner claimed (at most "
                    "claim_lease, %g s)",
                    self.manager.name,
                    len(self._held),
                    self.claim_lease,
                )
            waited = True
            await asyncio.sleep(min(self.poll_interval, 0.2))

    def _still_held(self) -> bool:
        """Whether a command another runner claimed in the last pass is still pending."""
        with self.tables.reading() as conn:
            pending = self.tables.pending(conn, self.manager.name)
        return any(c.command_id in self._held for c in pending)

    def drain(self) -> None:
        """``drain_async`` run to its end (outside an event loop)."""
        asyncio.run(self.drain_async())

    def _failure(self) -> ProjectionFailure | None:
        """Why the manager's projection stopped, if it did."""
        info = self.projections.status(f"process:{self.manager.name}")
        if info.status is not ProjectionStatus.FAILED:
            return None
        return info.last_error

    async def run(self) -> None:
        """Drain, then poll every ``poll_interval`` seconds until ``stop()``.

        Ends with ``ProcessManagerFailedError`` when the manager fails on an event.
        """
        while not self._stopping:
            await self.drain_async()
            await asyncio.sleep(self.poll_interval)

    def stop(self) -> None:
        self._stopping = True

    def state(self, process_id: str, *, tenant: str = "") -> dict[str, Any] | None:
        """The stored state of one process of ``tenant`` (None when it never started)."""
        with self.tables.reading() as conn:
            stored = self.tables.load(conn, self.manager.name, process_key(tenant, process_id))
        return None if stored is None else dict(json.loads(stored.state))

    def timeouts(self) -> list[tuple[str, str, int]]:
        """The armed timeouts: (process key, step, due at in microseconds)."""
        with self.tables.reading() as conn:
            return self.tables.timeouts(conn, self.manager.name)


__all__ = [
    "DEFAULT_CLAIM_LEASE",
    "DEFAULT_PROCESS_ROLES",
    "OutboxCommand",
    "ProcessManagerFailedError",
    "ProcessProjection",
    "ProcessRunnerBase",
    "ProcessTables",
    "StoredProcess",
    "load_process",
    "plain_id",
    "process_key",
    "save_process",
    "service_principal",
    "timeout_cause",
]
