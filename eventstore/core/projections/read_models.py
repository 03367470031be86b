"""Where a projection's results and its checkpoint live: the ``ReadModel`` port.

The runner hands a read model batches of events; the read model decides how
a batch is made durable together with the checkpoint. A database read model
(``eventstore.sqlite.SQLiteReadModel``) does both in one transaction, so an
event is applied exactly once even when it is delivered twice. The
``CheckpointedReadModel`` here serves projections that keep their results
themselves (Python objects, outside systems): the runner only keeps their
checkpoint, delivery is at least once, and ``ctx.position`` lets a handler
deduplicate.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import EventStoreError, StoreClosedError
from ..events import Event
from ..ports import CheckpointStore
from ..tenancy import tenant_of, with_tenant
from .port import Projection, ProjectionContext
from .status import DeadLetter, ProjectionFailure


@dataclass
class BatchOutcome:
    """What became of one batch.

    ``checkpoint`` is the stored checkpoint afterwards: the runner reads on
    from there (it may be behind the batch when someone reset the projection,
    or ahead when another runner got there first). ``failure`` is set when a
    handler raised and the projection must stop at that event.
    """

    checkpoint: int
    handled: int = 0
    skipped: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    failure: ProjectionFailure | None = None
    scanned_position: int = 0

    @property
    def read_on_after(self) -> int:
        """Where the runner reads on: past the checkpoint, and past what was scanned."""
        return max(self.checkpoint, self.scanned_position)


@runtime_checkable
class ReadModel(Protocol):
    def prepare(self, projection: Projection) -> int:
        """Ready a projection to run: reset it if it never ran. Returns its checkpoint."""
        ...

    def load_checkpoint(self, name: str) -> int: ...

    def load_scanned_position(self, name: str) -> int:
        """How far ``name`` has read the log, never below its checkpoint (0: never ran)."""
        ...

    def apply(
        self,
        projection: Projection,
        after_position: int,
        events: Sequence[Event],
        *,
        dead_letter: bool = False,
        scanned_to: int | None = None,
    ) -> BatchOutcome:
        """Handle ``events`` (all of those after ``after_position`` that the projection wants,
        up to ``scanned_to``, default the last one) and move the checkpoint past them, and
        the scanned position to ``scanned_to`` when every event was handled or set aside.

        ``after_position`` is where the stored progress (checkpoint or scanned
        position, whichever is further) is expected to be: events at or below
        the stored one are skipped, and when the stored one is behind (someone
        reset the projection) nothing is applied.
        """
        ...

    def save_scanned_position(self, name: str, after_position: int, scanned_to: int) -> int:
        """Record that ``name`` scanned the log up to ``scanned_to`` and found nothing to
        handle after ``after_position``. Does nothing when the stored progress is not at
        ``after_position`` (reset, or another runner moved it); returns the stored progress."""
        ...

    def reset(self, projection: Projection) -> None:
        """Call ``projection.reset``, set the checkpoint to 0 and clear its dead letters."""
        ...

    def dead_letters(self, name: str) -> list[DeadLetter]: ...


class StoreWriteInBatchError(EventStoreError):
    """Code run inside a projection's batch wrote to the event store through the store object.

    The batch's transaction is open on the store's own database (a read model on the
    store), so that write can neither join it nor wait for it: adapters raise this
    instead of failing on a nested transaction or waiting for ever.
    """

    def __init__(self, path: str, projection: str) -> None:
        self.path = path
        self.projection = projection
        super().__init__(
            f"projection {projection!r} wrote to the event store {path!r} through the store "
            "object (store.append, or a Repository made on the store, say) while its batch's "
            "transaction is open on the store's database: that write can neither join the "
            "transaction nor wait for it to end. Append through ctx.store instead "
            "(ctx.store.append(...), or Repository(ctx.store, ...)): it commits with the "
            "batch and its checkpoint, or not at all"
        )


_SQLITE_ENDS = (
    "sqlite3's executescript() commits the open transaction before it runs its script, and "
    "commit(), rollback() and COMMIT or ROLLBACK statements end it, which would commit the "
    "batch apart from its checkpoint"
)


class HandlerEndedTransactionError(EventStoreError):
    """A projection's handler (or reset) tried to end the read model's transaction.

    ``ended`` says whether the transaction did end (what the batch wrote before may then
    be committed without its checkpoint: the projection stops there, and only a rebuild
    makes it whole); ``statement`` names what was refused, when known.
    """

    def __init__(
        self,
        projection: str,
        position: int,
        statement: str | None,
        ended: bool,
        *,
        how: str = _SQLITE_ENDS,
    ) -> None:
        self.projection = projection
        self.position = position
        self.statement = statement  # "COMMIT" or "ROLLBACK" when refused; None when not seen
        self.ended = ended  # the transaction did end: what it held may be committed
        where = f"handler at position {position}" if position else "reset()"
        tried = f" (a {statement})" if statement else ""
        if ended:
            outcome = (
                "The transaction had ended, so what this batch wrote before may be committed "
                "without its checkpoint: it is stopped here. Fix the code, then call "
                f"rebuild({projection!r})."
            )
        else:
            outcome = "It was refused and the transaction rolled back, so nothing is lost."
        super().__init__(
            f"projection {projection!r}'s {where} tried to end the read model's "
            f"transaction{tried}: {how}. {outcome} Run each statement with "
            "ctx.connection.execute() or executemany() instead"
        )


class ReadModelClosedError(StoreClosedError):
    """A read model was used after ``close()``: it cannot be opened again."""

    def __init__(self, path: str, kind: str) -> None:
        self.store = path
        self.path = path
        self.kind = kind
        Exception.__init__(
            self,
            f"read model {path!r} is closed; make a new {kind} to use it again (and register "
            "its projections with that one)",
        )


class HandlerFailedError(Exception):
    """Raised out of a read model's transaction to roll it back; carries the failing index."""

    def __init__(self, index: int, failure: ProjectionFailure) -> None:
        super().__init__(failure.describe())
        self.index = index
        self.failure = failure


def handle_events(
    projection: Projection, events: Sequence[Event], ctx: ProjectionContext, stored: int
) -> int:
    """Feed ``events`` after ``stored`` to the projection in order; returns how many it handled.

    A handler that raises becomes ``HandlerFailedError`` with the event's index.
    """
    handle = projection.handle
    handled = 0
    for index, event in enumerate(events):
        position = event.position
        if position <= stored:
            continue
        ctx.position = position
        # The event's tenant (its stored id's, else its metadata's): the handler
        # keys its read model by it, and a process manager loads and saves in it.
        tenant = tenant_of(event)
        ctx.tenant = tenant
        try:
            if tenant:
                with with_tenant(tenant):
                    handle(event, ctx)
            else:
                handle(event, ctx)
        except Exception as exc:
            raise HandlerFailedError(
                index, ProjectionFailure.from_exception(projection.name, event, exc)
            ) from exc
        handled += 1
    return handled


class CheckpointedReadModel:
    """For projections that keep their own results; the runner keeps only the checkpoint.

    With ``checkpoints`` (any ``CheckpointStore``, such as the event store) the
    checkpoint survives restarts: use that for projections with outside
    effects, whose results outlive the process. Without, it lives in memory,
    which suits results held in Python objects (a restart rebuilds them).
    Checkpoints are saved after each batch, so after a crash the events since
    the last one are delivered again (at least once). Dead letters are kept in
    memory.
    """

    def __init__(self, checkpoints: CheckpointStore | None = None) -> None:
        self._store = checkpoints
        self._memory: dict[str, tuple[int, int]] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._lock = threading.RLock()

    def load_checkpoint(self, name: str) -> int:
        if self._store is not None:
            return self._store.load_checkpoint(name)
        return self._memory.get(name, (0, 0))[0]

    def load_scanned_position(self, name: str) -> int:
        if self._store is not None:
            load = getattr(self._store, "load_scanned_position", None)
            if load is None:  # a checkpoint store from before scanned positions
                return self._store.load_checkpoint(name)
            return max(self._store.load_checkpoint(name), int(load(name)))
        position, scanned = self._memory.get(name, (0, 0))
        return max(position, scanned)

    def _save(self, name: str, position: int, scanned: int | None = None) -> None:
        scanned = position if scanned is None else max(position, scanned)
        if self._store is not None:
            if scanned != position:
                self._store.save_checkpoint(name, position, scanned_position=scanned)
            else:
                self._store.save_checkpoint(name, position)
        else:
            self._memory[name] = (position, scanned)

    def _has_run(self, name: str) -> bool:
        if self._store is not None:
            lister = getattr(self._store, "list_checkpoints", None)
            if callable(lister):
                return name in lister()
            return self._store.load_checkpoint(name) > 0
        return name in self._memory

    def prepare(self, projection: Projection) -> int:
        with self._lock:
            if not self._has_run(projection.name):
                projection.reset(ProjectionContext(projection.name))
                self._save(projection.name, 0)
            return self.load_checkpoint(projection.name)

    def save_scanned_position(self, name: str, after_position: int, scanned_to: int) -> int:
        with self._lock:
            stored = self.load_checkpoint(name)
            progress = max(stored, self.load_scanned_position(name))
            if progress != after_position or scanned_to <= progress:
                return progress
            self._save(name, stored, scanned_to)
            return scanned_to

    def apply(
        self,
        projection: Projection,
        after_position: int,
        events: Sequence[Event],
        *,
        dead_letter: bool = False,
        scanned_to: int | None = None,
    ) -> BatchOutcome:
        name = projection.name
        with self._lock:
            checkpoint = self.load_checkpoint(name)
            stored = max(checkpoint, self.load_scanned_position(name))
            if stored < after_position:
                return BatchOutcome(checkpoint=checkpoint, scanned_position=stored)
            outcome = BatchOutcome(
                checkpoint=checkpoint, skipped=sum(1 for e in events if e.position <= stored)
            )
            ctx = ProjectionContext(name)
            pending = list(events)
            complete = True
            while pending:
                try:
                    outcome.handled += handle_events(projection, pending, ctx, stored)
                except HandlerFailedError as failed:
                    # Results cannot be rolled back here: the events before it stay handled.
                    outcome.handled += sum(
                        1 for e in pending[: failed.index] if e.position > stored
                    )
                    if failed.index > 0:
                        checkpoint = max(checkpoint, pending[failed.index - 1].position)
                        stored = max(stored, checkpoint)
                    if not dead_letter:
                        outcome.failure = failed.failure
                        complete = False
                        break
                    outcome.dead_letters.append(failed.failure)
                    self._dead.setdefault(name, []).append(failed.failure)
                    checkpoint = max(checkpoint, pending[failed.index].position)
                    stored = max(stored, checkpoint)
                    pending = pending[failed.index + 1 :]
                    continue
                checkpoint = max(checkpoint, pending[-1].position)
                break
            scanned = max(stored, checkpoint)
            if complete and scanned_to is not None:
                scanned = max(scanned, scanned_to)
            self._save(name, checkpoint, scanned)
            outcome.checkpoint = checkpoint
            outcome.scanned_position = scanned
            return outcome

    def reset(self, projection: Projection) -> None:
        with self._lock:
            projection.reset(ProjectionContext(projection.name))
            self._save(projection.name, 0)
            self._dead.pop(projection.name, None)

    def dead_letters(self, name: str) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead.get(name, []))
