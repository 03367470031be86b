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

from ..events import Event
from ..ports import CheckpointStore
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


@runtime_checkable
class ReadModel(Protocol):
    def prepare(self, projection: Projection) -> int:
        """Ready a projection to run: reset it if it never ran. Returns its checkpoint."""
        ...

    def load_checkpoint(self, name: str) -> int: ...

    def apply(
        self,
        projection: Projection,
        after_position: int,
        events: Sequence[Event],
        *,
        dead_letter: bool = False,
    ) -> BatchOutcome:
        """Handle ``events`` (all of those after ``after_position`` up to the last one) and move
        the checkpoint past them. Events at or below the stored checkpoint are skipped."""
        ...

    def reset(self, projection: Projection) -> None:
        """Call ``projection.reset``, set the checkpoint to 0 and clear its dead letters."""
        ...

    def dead_letters(self, name: str) -> list[DeadLetter]: ...


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
        try:
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
        self._memory: dict[str, int] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._lock = threading.RLock()

    def load_checkpoint(self, name: str) -> int:
        if self._store is not None:
            return self._store.load_checkpoint(name)
        return self._memory.get(name, 0)

    def _save(self, name: str, position: int) -> None:
        if self._store is not None:
            self._store.save_checkpoint(name, position)
        else:
            self._memory[name] = position

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

    def apply(
        self,
        projection: Projection,
        after_position: int,
        events: Sequence[Event],
        *,
        dead_letter: bool = False,
    ) -> BatchOutcome:
        name = projection.name
        with self._lock:
            stored = self.load_checkpoint(name)
            if stored < after_position:
                return BatchOutcome(checkpoint=stored)
            outcome = BatchOutcome(
                checkpoint=stored, skipped=sum(1 for e in events if e.position <= stored)
            )
            ctx = ProjectionContext(name)
            pending = list(events)
            while pending:
                try:
                    outcome.handled += handle_events(projection, pending, ctx, stored)
                except HandlerFailedError as failed:
                    # Results cannot be rolled back here: the events before it stay handled.
                    outcome.handled += sum(
                        1 for e in pending[: failed.index] if e.position > stored
                    )
                    if failed.index > 0:
                        stored = pending[failed.index - 1].position
                    if not dead_letter:
                        outcome.failure = failed.failure
                        break
                    outcome.dead_letters.append(failed.failure)
                    self._dead.setdefault(name, []).append(failed.failure)
                    stored = pending[failed.index].position
                    pending = pending[failed.index + 1 :]
                    continue
                stored = max(stored, pending[-1].position)
                break
            self._save(name, stored)
            outcome.checkpoint = stored
            return outcome

    def reset(self, projection: Projection) -> None:
        with self._lock:
            projection.reset(ProjectionContext(projection.name))
            self._save(projection.name, 0)
            self._dead.pop(projection.name, None)

    def dead_letters(self, name: str) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead.get(name, []))
