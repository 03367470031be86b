"""Group commit: many appends, one transaction, one fsync (docs/decisions.md, "Group commit").

An append waits in a queue while a group is being written; the next group takes
what is queued (up to ``MAX_GROUP``) and runs each append in its own SAVEPOINT
inside one ``BEGIN IMMEDIATE`` transaction, then commits once. A member that
fails a check is rolled back to its savepoint alone; the others stay.

Leader/follower: the first caller to find no group being written leads: it writes
the group on its own thread, so a lone synchronous caller pays no thread hand-off.
A lone caller (nobody writing, nobody expected back) skips the queue too: the store
writes its append as it would without group commit (``lead_alone``). When its own
append is answered a leader hands the lead to the next synchronous caller waiting,
or, when only ``async`` callers wait, to the store's writer thread (``async``
callers never write on the event loop).

Every answer waits for COMMIT, errors and "already processed" included: an error
computed inside the group could otherwise be contradicted by a failed commit, and
an "already processed" answer could name events that were never committed.

Gathering: synchronous callers that were answered together come back together, but
one at a time (each needs the GIL to make its next command). The first one back
used to find no group being written and commit alone, paying a whole fsync for one
append while the others queued behind it: groups alternated between all the threads
and one. A leader now waits, at most ``GATHER_WAIT``, until as many appends are queued
as the last group had synchronous callers (docs/decisions.md, "Group commit gathers
the last group's threads"). A lone caller's group had one, itself: it never waits.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from ..core.errors import StoreClosedError
from ..core.events import NewEvent
from ..core.ports import AppendResult
from ..core.units import StreamAppend

if TYPE_CHECKING:
    from .store import SQLiteEventStore

# The most appends in one transaction: bounds a group's latency and its memory.
MAX_GROUP = 256

# The longest a leader waits for the last group's synchronous callers to queue again
# (seconds): paid once when callers stop coming back, then the group size follows.
GATHER_WAIT = 0.001

_EXPIRY_SWEEP_CHANCE = 1 / 1_000


class _Wake:
    """Wakes one waiting synchronous caller, once: a bare lock, taken when made.

    ``threading.Event`` builds a ``Condition`` and a waiter lock per wait and runs
    Python code under the GIL to set each one; a group answers up to all but one of
    the threads at once, and making and setting them took about a fifth of the
    16-thread run's GIL samples (``py-spy record --gil``).
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


class Member:
    """One queued append, its answer, and how its caller waits for it."""

    __slots__ = (
        "aggregate_id",
        "aggregate_type",
        "command_id",
        "command_ttl",
        "done",
        "encoded",
        "error",
        "events",
        "expected_version",
        "future",
        "lead",
        "loop",
        "result",
        "wake",
    )

    def __init__(
        self,
        aggregate_id: str,
        aggregate_type: str,
        expected_version: int,
        events: Sequence[NewEvent],
        encoded: Sequence[tuple[str | None, str | None]],
        command_id: str | None,
        command_ttl: timedelta,
    ) -> None:
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        self.expected_version = expected_version
        self.events = events
        self.encoded = encoded
        self.command_id = command_id
        self.command_ttl = command_ttl
        self.result: AppendResult | None = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.wake: _Wake | None = None
        self.future: asyncio.Future[AppendResult] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def answer(self) -> AppendResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class UnitMember(Member):
    """A unit (``append_many``) queued as one member of a group: its streams are written
    together in the member's savepoint, so a failing unit is undone whole and alone."""

    __slots__ = ("items",)

    def __init__(
        self, items: Sequence[StreamAppend], command_id: str | None, command_ttl: timedelta
    ) -> None:
        first = items[0]
        super().__init__(
            first.aggregate_id,
            first.aggregate_type,
            first.expected_version,
            first.events,
            (),
            command_id,
            command_ttl,
        )
        self.items = items


def _resolve(future: asyncio.Future[AppendResult], member: Member) -> None:
    if future.done():  # the caller was cancelled: the append stands or failed regardless
        return
    if member.error is not None:
        future.set_exception(member.error)
    else:
        assert member.result is not None
        future.set_result(member.result)


def _resolve_all(members: list[Member]) -> None:
    """Answer a group's ``async`` members of one loop, in queue order, on that loop."""
    for member in members:
        assert member.future is not None
        _resolve(member.future, member)


class GroupCommitter:
    """The queue and the leader hand-over of one store's group commit."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._queue: list[Member] = []
        self._leading = False
        self._closed = False
        self._writer: ThreadPoolExecutor | None = None
        self._leader_thread = 0  # the thread writing groups now (0: none)
        # Gathering (see the module's docstring): the last group's synchronous callers,
        # and a leader waiting for them to queue again.
        self._cohort = 0
        self._gathering = False
        self._gathered = threading.Condition(self._lock)

    # -- callers -------------------------------------------------------------------------
    def append(self, member: Member) -> AppendResult:
        """Queue ``member`` and wait for its answer, leading the writing if nobody is."""
        me = threading.get_ident()
        if self._leader_thread == me:
            # Called by the leader's own thread (a commit listener that appends): queued,
            # it would wait for itself. Written alone, here.
            self._write([member])
            return member.answer()
        with self._lock:
            if self._closed:
                raise StoreClosedError(self._store.path)
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                member.wake = _Wake()
            self._queue.append(member)
            if self._gathering and len(self._queue) >= self._cohort:
                self._gathered.notify()
        if not lead:
            assert member.wake is not None
            try:
                member.wake.wait()
            except BaseException:  # interrupted (Ctrl-C) while it waited
                self._give_up(member)
                raise
            if not member.lead:
                return member.answer()
        self._lead(member)
        return member.answer()

    def _give_up(self, member: Member) -> None:
        """A waiting caller was interrupted: its append leaves the queue if it is still
        there (stored or not, as any interrupted write), and a lead it was handed
        meanwhile passes on, so the callers behind it do not wait for ever."""
        with self._lock:
            if member in self._queue:
                self._queue.remove(member)
            if member.lead:
                self._hand_over()

    def lead_alone(self) -> bool:
        """Take the lead for a lone caller, whose append the store then writes at once in a
        transaction of its own (the path of a store without group commit), when nobody is
        writing and the last group had at most one synchronous caller: then nobody is
        expected to join it. The caller must call ``end_alone`` after, whatever happens;
        callers that queue meanwhile get the lead then."""
        if self._leading or self._cohort > 1:  # a hint read without the lock: when busy,
            return False  # the queue's path takes the lock once, not twice
        with self._lock:
            if self._closed:
                raise StoreClosedError(self._store.path)
            if self._leading or self._cohort > 1:
                return False
            self._leading = True
            self._leader_thread = threading.get_ident()
            return True

    def end_alone(self) -> None:
        """A lone caller's append is done (written or failed): pass the lead on."""
        with self._lock:
            self._leader_thread = 0
            self._hand_over()

    async def append_async(self, member: Member) -> AppendResult:
        """Queue ``member`` and await its answer; the writing runs on a thread, never here."""
        loop = asyncio.get_running_loop()
        member.loop = loop
        member.future = loop.create_future()
        with self._lock:
            if self._closed:
                raise StoreClosedError(self._store.path)
            start = not self._leading
            if start:
                self._leading = True
            self._queue.append(member)
        if start:
            self._start_writer()
        return await member.future

    def close(self) -> None:
        """Refuse new appends; each queued one gets ``StoreClosedError``.

        A group being written finishes (the pool's close waits for the write lock).
        """
        with self._lock:
            self._closed = True
            queued, self._queue = self._queue, []
            writer, self._writer = self._writer, None
            self._gathered.notify_all()
        for member in queued:
            member.error = StoreClosedError(self._store.path)
        self._finish_all(queued)
        if writer is not None:
            writer.shutdown(wait=False)

    # -- the leader ----------------------------------------------------------------------
    def _start_writer(self) -> None:
        with self._lock:
            if self._closed:  # close() answered the queue already
                self._leading = False
                return
            if self._writer is None:
                self._writer = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="eventstore-group-commit"
                )
            writer = self._writer
        try:
            writer.submit(self._lead, None)
        except RuntimeError:  # shut down by close() just now: close() answered the queue
            with self._lock:
                self._leading = False

    def _lead(self, own: Member | None) -> None:
        """Write groups until ``own`` is answered (the writer thread: until the queue is
        empty), then hand the lead over."""
        me = threading.get_ident()
        with self._lock:
            self._leader_thread = me
        try:
            self._lead_groups(own)
        finally:
            with self._lock:
                if self._leader_thread == me:  # not yet taken by the next leader
                    self._leader_thread = 0

    def _lead_groups(self, own: Member | None) -> None:
        while True:
            with self._lock:
                if own is not None and own.done:
                    self._hand_over()
                    return
                if len(self._queue) < self._cohort and not self._closed:
                    self._gathering = True
                    try:
                        self._gathered.wait(GATHER_WAIT)
                    except BaseException:  # interrupted (Ctrl-C): the others must not hang
                        self._gathering = False
                        if own is not None and own in self._queue:
                            self._queue.remove(own)
                        self._hand_over()
                        raise
                    self._gathering = False
                batch = self._queue[:MAX_GROUP]
                del self._queue[:MAX_GROUP]
                if not batch:
                    self._leading = False
                    return
                self._cohort = sum(1 for m in batch if m.future is None)
            try:
                self._write(batch)
            except BaseException as exc:  # never leave a member unanswered
                unanswered = [member for member in batch if not member.done]
                for member in unanswered:
                    member.error = exc
                self._finish_all(unanswered)
                if not isinstance(exc, Exception):
                    with self._lock:
                        self._hand_over()
                    raise

    def _hand_over(self) -> None:
        """Called under the lock by a leader that is done: pass the lead on, or drop it."""
        if not self._queue:
            self._leading = False
            return
        for member in self._queue:
            if member.wake is not None:
                member.lead = True
                member.wake.set()
                return
        # Only async callers wait: the writer thread leads for them.
        if self._closed:
            self._leading = False
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="eventstore-group-commit"
            )
        try:
            self._writer.submit(self._lead, None)
        except RuntimeError:
            self._leading = False

    def _finish_all(self, members: list[Member]) -> None:
        """Answer ``members``: wake each synchronous caller, and hand each event loop its
        ``async`` callers' answers in one call.

        One ``call_soon_threadsafe`` per loop and group, not per member: each one writes
        to the loop's self-pipe, and that ``send`` lets go of the GIL; with the loop busy
        running the answered clients' next commands, the writer then waited up to a GIL
        switch interval (5 ms) to get it back, once per member, before it could start the
        next group (docs/decisions.md, "Group commit answers each event loop once per
        group").
        """
        by_loop: dict[asyncio.AbstractEventLoop, list[Member]] = {}
        for member in members:
            member.done = True
            if member.wake is not None and not member.lead:  # a leader is awake already
                member.wake.set()
            elif member.future is not None and member.loop is not None:
                by_loop.setdefault(member.loop, []).append(member)
        for loop, answered in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                loop.call_soon_threadsafe(_resolve_all, answered)

    def _write(self, batch: list[Member]) -> None:
        store = self._store
        last = store.write_group(batch)
        self._finish_all(batch)
        if last:
            store.notify_commit(last)
        if any(m.command_id for m in batch) and random.random() < _EXPIRY_SWEEP_CHANCE * len(batch):
            store._sweep_after_commit()


__all__ = ["GATHER_WAIT", "MAX_GROUP", "GroupCommitter", "Member", "UnitMember"]
