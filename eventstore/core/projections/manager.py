"""The projection runner: feeds registered projections from the global log.

Each projection reads on from its own checkpoint (a global position), so
projections added later, paused, failed or rebuilt do not hold the others
back. The runner consumes any ``EventSource`` (the event store here, the NATS
bus later); a log that is also a ``CommitSource`` wakes ``run()`` at once,
otherwise ``run()`` polls.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import instrumentation as _instr
from ..errors import EventStoreError, StoreClosedError
from ..events import Event
from ..follow import DEFAULT_POLL_INTERVAL, CommitSignal
from ..ports import EventSource, read_page
from ..upcasting import Upcasters
from .functions import event_type_list
from .port import Projection, ProjectionContext
from .read_models import BatchOutcome, CheckpointedReadModel, ReadModel
from .status import (
    DeadLetter,
    MetricPoint,
    ProjectionFailure,
    ProjectionInfo,
    ProjectionStatus,
    RebuildProgress,
    metric_points,
)

log = logging.getLogger("eventstore.projections")

DEFAULT_BATCH_SIZE = 1000

# How many more pages catch_up() and rebuild() read, once past the head of the log they
# found when called, while appends keep coming: enough to pick up what was appended while
# their last batch was being handled, few enough that a writer that never pauses cannot
# keep them running for ever (run() or the next catch_up() goes on from there).
MAX_READS_PAST_HEAD = 10

ProgressCallback = Callable[[RebuildProgress], None]


class UnknownProjectionError(EventStoreError, LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"no projection named {name!r} is registered with this manager "
            f"(registered: {', '.join(self.known) or 'none'}). Register it first with "
            "manager.register(projection)."
        )


class ProjectionNotRebuildableError(EventStoreError, ValueError):
    """``rebuild(name)`` of a projection whose state the log alone cannot give again.

    A projection says so with a ``rebuild_refusal`` attribute (the reason and what
    to do instead); a process manager's does: its decisions depend on answers and
    on time, which are not events.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"projection {name!r} cannot be rebuilt: {reason}")


class CheckpointAheadOfLogError(EventStoreError):
    """A projection's stored progress is past the head of the log it reads."""

    def __init__(self, name: str, checkpoint: int, scanned_position: int, head: int) -> None:
        self.name = name
        self.checkpoint = checkpoint
        self.scanned_position = scanned_position
        self.head = head
        scanned = (
            f" (it has read the log up to position {scanned_position})"
            if scanned_position > checkpoint
            else ""
        )
        super().__init__(
            f"projection {name!r} has its checkpoint at position {checkpoint}{scanned}, past "
            f"the head of the log it reads (position {head}): its read model was made from "
            "another log (a store file made again while the read model's own file stayed, "
            "say), and it would skip this log's events up to there without handling them, "
            f"so it is stopped. Call manager.rebuild({name!r}) to empty its read model and "
            "replay this log into it, or register it with the read model made from this log."
        )


class _Run:
    """One ``run()``: its stop request and its wake-up signal (while it runs)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.signal: CommitSignal | None = None


class _Upcasting:
    """What the read model is handed: the projection, seeing each event upcast.

    Upcasting inside ``handle`` makes an upcaster that raises fail the projection at
    that event like a handler would (stop, or dead-letter), with its transaction.
    Events that do not become a wanted type are not handed on.
    """

    def __init__(
        self, projection: Projection, upcasters: Upcasters, wanted: frozenset[str] | None
    ) -> None:
        self.name = projection.name
        self._projection = projection
        self._upcast = upcasters.upcast
        self._wanted = wanted
        self.unhandled: dict[str, int] = {}
        # The last position counted: a batch rolled back and handled again (a later event
        # failed) feeds its events again, and each is counted once.
        self._counted_to = 0

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        event = self._upcast(event)
        if self._wanted is None or event.event_type in self._wanted:
            self._projection.handle(event, ctx)
        elif not event.position or event.position > self._counted_to:
            # Read because its upcaster did not say what it makes (Upcasters.register's to=).
            self._counted_to = max(self._counted_to, event.position)
            self.unhandled[event.event_type] = self.unhandled.get(event.event_type, 0) + 1

    def reset(self, ctx: ProjectionContext) -> None:
        self._projection.reset(ctx)
        self.unhandled.clear()  # a rebuild counts the log's events again
        self._counted_to = 0


@dataclass
class _Registration:
    projection: Projection
    read_model: ReadModel
    dead_letter: bool
    event_types: list[str] | None
    batch_size: int
    fed: Projection  # the projection as the read model is handed it (upcasting, if any)
    upcasters: Upcasters | None  # what upcasts the events it is fed (None: nothing)
    position: int = 0  # read on after this: the checkpoint, or the scanned position if further
    stored: int = 0  # that position as last stored in the read model
    seen_head: int = 0
    status: ProjectionStatus = ProjectionStatus.CATCHING_UP
    paused: bool = False
    last_error: ProjectionFailure | None = None
    events_handled: int = 0
    errors: int = 0
    dead_lettered: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def name(self) -> str:
        return self.projection.name

    @property
    def read_types(self) -> list[str] | None:
        """The stored types read: ``event_types`` and those the upcasters turn into them
        (asked at each read, so that upcasters registered after the projection count)."""
        if self.upcasters is None or self.event_types is None:
            return self.event_types
        return self.upcasters.stored_types_for(self.event_types)

    @property
    def is_active(self) -> bool:
        return not self.paused and self.status is not ProjectionStatus.FAILED


@dataclass
class _BatchResult:
    read: int
    handled: int
    caught_up: bool
    failed: bool


class ProjectionManager:
    """Registers projections and keeps them fed: ``catch_up()`` (sync) or ``run()`` (async).

    ``source`` is the event store (or any ``EventSource``). A projection's
    results and checkpoint live in its read model: pass ``read_model=`` to
    ``register`` (``SQLiteReadModel`` keeps both in one SQLite transaction),
    else ``default_read_model``, else a ``CheckpointedReadModel`` in memory.
    """

    def __init__(
        self,
        source: EventSource,
        *,
        default_read_model: ReadModel | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        upcasters: Upcasters | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source = source
        self.upcasters = upcasters
        self.default_read_model = default_read_model
        self.batch_size = batch_size
        self._registrations: dict[str, _Registration] = {}
        self._lock = threading.Lock()
        self._runs: weakref.WeakSet[_Run] = weakref.WeakSet()  # made by run(), not yet ended

    # -- registering ------------------------------------------------------------------
    def register(
        self,
        projection: Projection,
        *,
        read_model: ReadModel | None = None,
        dead_letter: bool = False,
        event_types: Iterable[object] | None = None,
        batch_size: int | None = None,
        upcasters: Upcasters | None = None,
    ) -> Projection:
        """Add a projection; it starts from its stored checkpoint (reset first if it never ran).

        ``dead_letter=True`` sets an event whose handler raises aside (in the
        read model's dead-letter list) and goes on, instead of stopping there.
        ``event_types`` (or a projection's own ``event_types`` attribute) limits
        what it is fed. ``upcasters`` (else the projection's own ``upcasters``
        attribute, else the manager's) upcast every event before the projection
        sees it; ``event_types`` then names upcast types, and the stored types
        that upcast into them are read too. Returns the projection, so this
        works as a decorator too.
        """
        name = getattr(projection, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"{projection!r} has no name: a projection needs a non-empty str attribute "
                "'name' (its checkpoint is stored under it)"
            )
        missing = [m for m in ("handle", "reset") if not callable(getattr(projection, m, None))]
        if missing:
            raise TypeError(
                f"projection {name!r} ({type(projection).__name__}) has no method "
                f"{' or '.join(missing)}: a projection needs handle(event, ctx) and reset(ctx); "
                "for a plain function use the @projection(name) decorator"
            )
        types = event_types if event_types is not None else getattr(projection, "event_types", None)
        model = read_model if read_model is not None else self.default_read_model
        if model is None:
            model = CheckpointedReadModel()
        size = batch_size if batch_size is not None else self.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        wanted = event_type_list(name, types)
        # A registry given is used even while empty (is not None, not its truth): the
        # upcasters registered on it later apply, to what is read and what is fed.
        if upcasters is None:
            upcasters = getattr(projection, "upcasters", None)
        if upcasters is None:
            upcasters = self.upcasters
        fed: Projection = projection
        if upcasters is not None:
            fed = _Upcasting(
                projection, upcasters, frozenset(wanted) if wanted is not None else None
            )
        with self._lock:
            if name in self._registrations:
                raise ValueError(
                    f"a projection named {name!r} is already registered with this manager; "
                    "projection names must be unique (each has its own checkpoint)"
                )
            reg = _Registration(projection, model, dead_letter, wanted, size, fed, upcasters)
            model.prepare(fed)
            reg.position = reg.stored = _stored_progress(model, name)
            self._stop_if_ahead_of_log(reg)
            self._registrations[name] = reg
        return projection

    def unregister(self, name: str) -> None:
        """Stop feeding ``name`` and free the name; its read model keeps results and checkpoint.

        So a changed projection can be registered again under its name (a
        notebook re-running the cell that defines it, say): with the same read
        model it continues from the stored checkpoint. Waits for a batch of it
        in progress to finish.
        """
        reg = self._get(name)
        with reg.lock, self._lock:
            del self._registrations[name]

    @property
    def names(self) -> list[str]:
        return list(self._registrations)

    def _get(self, name: str) -> _Registration:
        reg = self._registrations.get(name)
        if reg is None:
            raise UnknownProjectionError(name, self._registrations)
        return reg

    def _selected(self, names: Sequence[str]) -> list[_Registration]:
        if names:
            return [self._get(n) for n in names]
        with self._lock:
            return list(self._registrations.values())

    def _still_registered(self, names: Sequence[str]) -> list[_Registration]:
        """Like ``_selected``, leaving out names unregistered meanwhile (for ``run()``: one
        registered again under its name is fed again)."""
        if not names:
            return self._selected(names)
        with self._lock:
            found = (self._registrations.get(n) for n in names)
            return [reg for reg in found if reg is not None]

    # -- feeding ------------------------------------------------------------------------
    def _batch(self, reg: _Registration) -> _BatchResult:
        """Read one batch after the projection's position and hand it to its read model."""
        if not _instr._hooks:
            return self._read_batch(reg)
        with _instr.operation(_instr.PROJECTION_BATCH, projection=reg.name) as attributes:
            result = self._read_batch(reg)
            attributes["event_count"] = result.handled
            attributes["outcome"] = "failed" if result.failed else "ok"
        if result.handled:
            _instr.record(_instr.PROJECTION_EVENTS_HANDLED, result.handled, projection=reg.name)
        _instr.record(
            _instr.PROJECTION_LAG,
            max(0, self.source.head_position() - reg.position),
            projection=reg.name,
        )
        return result

    def _read_batch(self, reg: _Registration) -> _BatchResult:
        page = read_page(
            self.source, reg.position, limit=reg.batch_size, event_types=reg.read_types
        )
        events = page.events
        full = len(events) >= reg.batch_size
        if not events:
            if not self._scanned(reg, page.scanned_to):
                # Reset meanwhile: read on from there (or the read model failed).
                return _BatchResult(0, 0, False, reg.status is ProjectionStatus.FAILED)
            reg.seen_head = max(reg.seen_head, page.scanned_to)
            return _BatchResult(0, 0, True, False)
        try:
            outcome = reg.read_model.apply(
                reg.fed,
                reg.stored,
                events,
                dead_letter=reg.dead_letter,
                scanned_to=page.scanned_to,
            )
        except Exception as exc:
            # The read model itself failed (its database is locked, gone or closed, say):
            # stop here too, at the first event it had not committed.
            outcome = _read_model_failure(reg, events, exc)
        reg.position = reg.stored = outcome.read_on_after
        reg.events_handled += outcome.handled
        if outcome.dead_letters:
            reg.errors += len(outcome.dead_letters)
            reg.dead_lettered += len(outcome.dead_letters)
            reg.last_error = outcome.dead_letters[-1]
            for letter in outcome.dead_letters:
                log.warning("dead-lettered: %s", letter.describe())
        if outcome.failure is not None:
            self._fail(reg, outcome.failure)
            return _BatchResult(len(events), outcome.handled, False, True)
        caught_up = not full and outcome.read_on_after >= events[-1].position
        if caught_up:
            reg.seen_head = max(reg.seen_head, page.scanned_to)
        return _BatchResult(len(events), outcome.handled, caught_up, False)

    @staticmethod
    def _fail(reg: _Registration, failure: ProjectionFailure | None) -> None:
        assert failure is not None
        reg.errors += 1
        reg.last_error = failure
        reg.status = ProjectionStatus.FAILED
        log.error("%s", failure.describe())

    def _scanned(self, reg: _Registration, scanned_to: int) -> bool:
        """Move past positions scanned without finding an event the projection wants.

        In memory at once, so the next poll starts there. Stored when a batch's
        worth of positions has been skipped (or with the next batch it handles),
        so a restart rescans at most that much and an idle poll writes nothing.
        False when the stored progress was found elsewhere than this runner left
        it (reset, or moved by another runner): it reads on from there instead.
        """
        if scanned_to <= reg.position:
            return True
        reg.position = scanned_to
        if scanned_to - reg.stored < reg.batch_size:
            return True
        save = getattr(reg.read_model, "save_scanned_position", None)
        if save is None:  # a read model from before scanned positions: keep it in memory
            return True
        try:
            stored = int(save(reg.name, reg.stored, scanned_to))
        except Exception as exc:
            self._fail(reg, _read_model_failure(reg, (), exc).failure)
            return False
        reg.stored = stored
        if stored != scanned_to:
            reg.position = stored
            return False
        return True

    def _stop_if_ahead_of_log(self, reg: _Registration) -> None:
        """Fail a projection whose stored progress is past the log's head (see the error)."""
        if reg.position == 0 or not _head_is_the_logs(self.source):
            return
        head = self.source.head_position()
        if reg.position <= head:
            return
        checkpoint = reg.read_model.load_checkpoint(reg.name)
        error = CheckpointAheadOfLogError(reg.name, checkpoint, reg.position, head)
        reg.status = ProjectionStatus.FAILED
        reg.errors += 1
        reg.last_error = ProjectionFailure(
            reg.name, reg.position, "", "", "", type(error).__name__, str(error), error=error
        )
        log.error("%s", reg.last_error.describe())

    def _feed(
        self, reg: _Registration, after_batch: Callable[[_BatchResult], None] | None = None
    ) -> int:
        """Feed ``reg`` until a read finds nothing new; sets its status; returns events handled.

        A page shorter than a batch was read before the appends made while it was
        handled, so it reads again until a page is empty. Once past the head it found
        when called (or, on a source that knows only the head it has seen, after a
        short page) it reads at most ``MAX_READS_PAST_HEAD`` more pages, so a writer that
        never pauses cannot keep it here for ever: it then leaves the projection
        CATCHING_UP. Call with ``reg.lock`` held.
        """
        handled = 0
        head = self.source.head_position() if _head_is_the_logs(self.source) else None
        reads_past_head = 0
        while True:
            if reg.paused:
                reg.status = ProjectionStatus.PAUSED
                return handled
            result = self._batch(reg)
            handled += result.handled
            if after_batch is not None:
                after_batch(result)
            if result.failed:
                return handled
            if result.caught_up and not result.read:
                reg.status = ProjectionStatus.PAUSED if reg.paused else ProjectionStatus.READY
                return handled
            if result.caught_up or (head is not None and reg.position >= head):
                reads_past_head += 1
                if reads_past_head > MAX_READS_PAST_HEAD:
                    reg.status = ProjectionStatus.CATCHING_UP
                    return handled

    def _catch_up_one(self, reg: _Registration) -> int:
        with reg.lock:
            if not reg.is_active:
                return 0
            reg.status = ProjectionStatus.CATCHING_UP
            return self._feed(reg)

    def catch_up(self, *names: str) -> dict[str, int]:
        """Feed the named projections (all by default) until each has reached the head.

        Appends made meanwhile are picked up: each reads until a read finds nothing
        new, but once past the head it found when called, at most
        ``MAX_READS_PAST_HEAD`` (10) more pages, so a writer that never pauses cannot
        keep ``catch_up`` running for ever (the projection is then CATCHING_UP, and
        ``run()`` or the next ``catch_up()`` goes on). A projection that fails stops at
        the failing event (see ``status``); the others go on. Returns how many
        events each projection handled in this call.
        """
        return {reg.name: self._catch_up_one(reg) for reg in self._selected(names)}

    def run(
        self, *names: str, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> Coroutine[Any, Any, None]:
        """Keep the projections fed until ``stop()`` is called or the task is cancelled.

        New commits in this process wake it at once; others are found by
        polling every ``poll_interval`` seconds. Between batches it yields to
        the event loop, so a long catch-up does not freeze a notebook.

        Stop wins (docs/decisions.md, 13): the run exists from this call on, so
        a ``stop()`` made right after ``asyncio.create_task(manager.run())``,
        before the task has taken a step, ends it at once; a ``stop()`` made
        before this call does not touch it.
        """
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        state = _Run()
        with self._lock:
            self._runs.add(state)
        return self._run(state, names, poll_interval)

    async def _run(self, state: _Run, names: Sequence[str], poll_interval: float) -> None:
        stopped = state.stopped
        signal = CommitSignal(self.source)
        state.signal = signal
        failing: set[str] = set()  # projections whose source read failed last time
        try:
            while not stopped.is_set():
                signal.arm()
                worked = source_failed = False
                for reg in self._still_registered(names):
                    if stopped.is_set():
                        break
                    if not reg.is_active or not reg.lock.acquire(blocking=False):
                        continue
                    try:
                        if reg.is_active:
                            if reg.status is not ProjectionStatus.REBUILDING:
                                reg.status = ProjectionStatus.CATCHING_UP
                            try:
                                result = self._batch(reg)
                            except StoreClosedError:
                                # Closed for good (the read model's own errors stop its
                                # projection instead): end as follow() does (decision 5).
                                raise
                            except Exception as exc:
                                # The source failed (a bus whose server is restarting, say):
                                # not the projection's fault, so keep running and read again.
                                source_failed = True
                                if reg.name not in failing:  # once per outage, not per retry
                                    failing.add(reg.name)
                                    log.warning(
                                        "projection %r: reading the source after position %d "
                                        "failed (%s); retrying every %.2fs",
                                        reg.name,
                                        reg.position,
                                        exc,
                                        poll_interval,
                                    )
                                continue
                            if reg.name in failing:
                                failing.discard(reg.name)
                                log.info("projection %r: reading the source again", reg.name)
                            if result.read and not result.caught_up:
                                worked = True
                            if result.caught_up and reg.status is ProjectionStatus.CATCHING_UP:
                                reg.status = ProjectionStatus.READY
                    finally:
                        reg.lock.release()
                    await asyncio.sleep(0)
                if source_failed and not stopped.is_set():
                    await asyncio.sleep(poll_interval)  # commits would wake a retry at once
                elif not worked and not stopped.is_set():
                    await signal.wait_async(poll_interval)
        finally:
            state.signal = None
            signal.close()
            with self._lock:
                self._runs.discard(state)

    def stop(self) -> None:
        """End every ``run()`` of this manager after its current batch (safe from any thread).

        Stop wins: it ends each run made by a ``run()`` call before it, even one
        whose task has not taken its first step yet (right after
        ``asyncio.create_task(manager.run())``, say). A later ``run()`` runs.
        """
        with self._lock:
            runs = list(self._runs)
        for state in runs:
            state.stopped.set()
            signal = state.signal
            if signal is not None:
                signal.wake()

    # -- control ------------------------------------------------------------------------
    def pause(self, name: str) -> None:
        """Stop feeding ``name`` after its current batch, until ``resume``."""
        reg = self._get(name)
        reg.paused = True
        with reg.lock:
            if reg.paused:
                reg.status = ProjectionStatus.PAUSED

    def resume(self, name: str) -> None:
        """Feed ``name`` again: after a pause, or after a failure (retrying the failing event).

        ``run()`` picks it up on its next round; call ``catch_up(name)`` to feed it now.
        """
        reg = self._get(name)
        with reg.lock:
            reg.paused = False
            reg.status = ProjectionStatus.CATCHING_UP
            reg.position = reg.stored = _stored_progress(reg.read_model, name)
            self._stop_if_ahead_of_log(reg)

    def rebuild(
        self,
        name: str,
        *,
        progress: ProgressCallback | None = None,
        show_progress: bool | None = None,
    ) -> ProjectionInfo:
        """Reset ``name`` and replay the whole log into it; appends made meanwhile are included.

        As with ``catch_up``, it reads until a read finds nothing new, at most
        ``MAX_READS_PAST_HEAD`` pages past the head it found when called.

        ``progress`` is called after each batch (for notebook widgets);
        ``show_progress`` draws a tqdm bar, by default when stderr is a terminal.
        Returns the projection's status afterwards (READY, or FAILED/PAUSED, or
        CATCHING_UP when appends kept coming past that bound).
        """
        reg = self._get(name)
        refusal = getattr(reg.projection, "rebuild_refusal", None)
        if refusal:
            raise ProjectionNotRebuildableError(name, refusal)
        bar: Any = None
        if show_progress is None:
            show_progress = sys.stderr.isatty()
        with reg.lock:
            reg.paused = False
            reg.status = ProjectionStatus.REBUILDING
            try:
                reg.read_model.reset(reg.fed)
            except Exception as exc:
                reg.status = ProjectionStatus.FAILED
                reg.errors += 1
                reg.last_error = ProjectionFailure(
                    name, 0, "", "", "", type(exc).__name__, f"reset failed: {exc}", error=exc
                )
                raise
            reg.position = reg.stored = 0
            reg.seen_head = 0
            started = time.perf_counter()
            handled = 0
            head = self.source.head_position()
            if show_progress:
                from tqdm import tqdm

                bar = tqdm(total=head, desc=f"rebuild {name}", unit="pos", unit_scale=True)

            def report(result: _BatchResult) -> None:
                nonlocal head, handled
                handled += result.handled
                head = max(head, reg.seen_head, reg.position)
                if not result.caught_up:
                    head = max(head, self.source.head_position())
                if bar is not None:
                    bar.total = head
                    bar.update(reg.position - bar.n)
                if progress is not None:
                    progress(
                        RebuildProgress(
                            name, reg.position, head, handled, time.perf_counter() - started
                        )
                    )

            try:
                self._feed(reg, report)
            finally:
                if bar is not None:
                    bar.close()
        return self.status(name)

    # -- reporting ----------------------------------------------------------------------
    def _timestamp_at(self, position: int) -> int | None:
        try:
            found = self.source.read_all(max(0, position - 1), limit=1)
        except Exception as exc:  # a bus whose server is down: the lag in positions still holds
            log.debug("no timestamp at position %d: %s", position, exc)
            return None
        return found[0].timestamp_micros if found else None

    def status(self, name: str) -> ProjectionInfo:
        """The projection's status now, with its lag behind the head of the log.

        The checkpoint is read from the read model, so progress made by another
        runner of the same projection shows too.
        """
        reg = self._get(name)
        head = self.source.head_position()
        checkpoint = reg.read_model.load_checkpoint(name)
        # The stored scanned position counts too: a filtered projection has read past its
        # last handled event (as this runner, another one, or before a restart).
        progress = _stored_progress(reg.read_model, name)
        accounted = max(progress, reg.seen_head if reg.position >= progress else 0)
        lag = max(0, head - accounted)
        lag_seconds = 0.0
        if lag:
            head_ts = self._timestamp_at(head)
            last_ts = self._timestamp_at(max(1, accounted))
            if head_ts is not None and last_ts is not None:
                lag_seconds = max(0.0, (head_ts - last_ts) / 1_000_000)
        status = reg.status
        if status is ProjectionStatus.READY and lag:
            status = ProjectionStatus.CATCHING_UP  # new events arrived since it caught up
        elif status is ProjectionStatus.CATCHING_UP and not lag:
            status = ProjectionStatus.READY  # read to the head (by a runner, maybe elsewhere)
        return ProjectionInfo(
            name=name,
            status=status,
            checkpoint=checkpoint,
            head_position=head,
            lag_positions=lag,
            lag_seconds=lag_seconds,
            events_handled=reg.events_handled,
            errors=reg.errors,
            dead_lettered=reg.dead_lettered,
            last_error=reg.last_error,
            unhandled=_unhandled(reg),
        )

    def statuses(self) -> list[ProjectionInfo]:
        return [self.status(reg.name) for reg in self._selected(())]

    def metrics(self) -> list[MetricPoint]:
        """Counters (events handled, errors, dead letters) and lag gauges, per projection."""
        return [point for info in self.statuses() for point in metric_points(info)]

    def dead_letters(self, name: str) -> list[DeadLetter]:
        reg = self._get(name)
        return reg.read_model.dead_letters(name)

    def __repr__(self) -> str:
        parts = ", ".join(f"{r.name}: {r.status}" for r in self._selected(()))
        return f"ProjectionManager({parts})"


def _read_model_failure(
    reg: _Registration, events: Sequence[Event], exc: Exception
) -> BatchOutcome:
    """The outcome of a batch whose read model raised outside the handlers: a failure at
    the first event after its stored progress (where it stops), that progress unchanged
    (as last known here when the read model cannot even say it: closed, say)."""
    try:
        checkpoint = reg.read_model.load_checkpoint(reg.name)
        progress = _stored_progress(reg.read_model, reg.name)
    except Exception:
        checkpoint, progress = min(reg.stored, reg.position), reg.stored
    at = next((e for e in events if e.position > progress), None)
    if at is None:
        failure = ProjectionFailure(
            reg.name, progress, "", "", "", type(exc).__name__, str(exc), error=exc
        )
    else:
        failure = ProjectionFailure.from_exception(reg.name, at, exc)
    outcome = BatchOutcome(checkpoint=checkpoint, scanned_position=progress)
    outcome.failure = failure
    return outcome


def _stored_progress(model: ReadModel, name: str) -> int:
    """Where ``name`` reads on after, as stored: its checkpoint or its scanned position."""
    checkpoint = model.load_checkpoint(name)
    load = getattr(model, "load_scanned_position", None)  # absent from older read models
    return max(checkpoint, int(load(name))) if load is not None else checkpoint


def _head_is_the_logs(source: EventSource) -> bool:
    """Whether ``source.head_position()`` is the head of the whole log, not a lower bound.

    A source with a ``store`` that is None (a ``NatsEventBus`` without a store) knows
    only the positions it has seen in this process (0 before its first read), so
    stored progress past that head proves nothing. Views (``TenantEventSource``) are
    judged by the source they wrap.
    """
    for _ in range(8):  # a view of a view, and so on
        if getattr(source, "store", True) is None:
            return False
        inner = getattr(source, "source", None)
        if inner is None or inner is source:
            return True
        source = inner
    return True


def _unhandled(reg: _Registration) -> dict[str, int]:
    """The projection's own count of events it had no handler for, and the runner's."""
    counts = dict(getattr(reg.projection, "unhandled", None) or {})
    if reg.fed is not reg.projection:
        for kind, count in getattr(reg.fed, "unhandled", {}).items():
            counts[kind] = counts.get(kind, 0) + count
    return counts
