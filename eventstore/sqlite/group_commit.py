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

A leader interrupted while it writes a group (Ctrl-C in the main thread: a
``KeyboardInterrupt``, or any ``BaseException`` that is not an ``Exception``) gives the
interrupt to its own caller only. The group's transaction is rolled back; the other
members whose appends it held go back to the front of the queue, and the next leader
writes them (``GroupCommitter._write_failed``). A member answers only what stands:
each answer given inside a transaction is kept with it (``GroupTransaction``) and
counts once that transaction has committed (``Member.settled``).

When the writer thread's pool takes no more work (the interpreter is shutting down:
the main thread has ended while a service thread runs an event loop), a thread of its
own leads, as ``OffLoopCalls`` does; a forked child forgets the parent's pool and
leader (``os.register_at_fork``).

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
import copy
import os
import random
import threading
import types
import weakref
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


def own_copy(error: BaseException) -> BaseException:
    """``error`` for one more caller: a new exception of the same class, with the same
    message and attributes, chained from ``error`` (its ``__cause__``).

    One error answers every member of a group that fails as a whole (its BEGIN or its
    COMMIT failed); raised as one object in each caller's thread, its traceback would
    gather every caller's frames. Made without calling ``__init__`` (the framework's
    errors take other arguments than their message), so nothing is computed again.
    """
    cls = type(error)
    try:
        if isinstance(cls.__init__, types.FunctionType):
            # A Python __init__ (the framework's errors): its arguments are not the args.
            made = cls.__new__(cls, *error.args)
            made.__dict__.update(error.__dict__)
        else:
            # A built-in one (OSError, UnicodeDecodeError, sqlite3's): the args make it
            # again with every field (filename, encoding...), as pickling does.
            made = copy.copy(error)
    except Exception:  # a class that cannot be made this way: the one object, as before
        return error
    made.__cause__ = error
    return made


class GroupTransaction:
    """One transaction on the writer, as the answers given inside it see it: they stand
    once it has committed. ``committed`` is set as soon as COMMIT returns."""

    __slots__ = ("committed",)

    def __init__(self) -> None:
        self.committed = False


class Member:
    """One queued append, its answer, and how its caller waits for it."""

    __slots__ = (
        "aggregate_id",
        "aggregate_type",
        "command_id",
        "command_ttl",
        "commit",
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
        # The transaction the answer was given in (None: an answer given outside one, a
        # BEGIN that failed, an outcome read after a rollback): it stands once that
        # transaction committed. Set before the answer, cleared after it.
        self.commit: GroupTransaction | None = None
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

    def settled(self) -> bool:
        """Whether this member has an answer that stands: one given outside a transaction,
        or inside one that committed. An answer given inside a transaction that was
        rolled back (its writer was interrupted) is void: the append was not stored."""
        if self.result is None and self.error is None:
            return False
        return self.commit is None or self.commit.committed

    def unanswer(self) -> None:
        """Forget a void answer: the append is queued again, as it was."""
        self.result = self.error = None
        self.commit = None


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


# Every store's committer, for a forked child to forget its parent's threads.
_committers: weakref.WeakSet[GroupCommitter] = weakref.WeakSet()


def _forget_threads_in_child() -> None:
    """In a forked child: the parent's writer thread, leaders and waiting callers do not exist."""
    for committer in list(_committers):
        committer._forget_other_threads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_in_child)


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
        _committers.add(self)

    def _forget_other_threads(self) -> None:
        """In a forked child only the forking thread runs. The writer pool's thread is the
        parent's: the inherited pool believes it has an idle worker and would never run
        a job. The callers queued and a leader on another thread are the parent's too, and
        so may be a holder of the lock. The child starts afresh (a lead held by the
        forking thread itself stays, for it to pass on)."""
        self._writer = None
        self._lock = threading.Lock()
        self._gathered = threading.Condition(self._lock)
        self._queue = []
        self._gathering = False
        if self._leader_thread != threading.get_ident():
            self._leading = False
            self._leader_thread = 0

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
        meanwhile passes on, so the callers behind it do not wait for ever. Nobody waits
        on its wake any more: it is never handed the lead again."""
        with self._lock:
            member.wake = None
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
        if self._leader_thread == threading.get_ident():
            # The leader's own thread (a commit listener running an event loop): queued, it
            # would wait for itself. Written alone, here, as ``append`` does.
            self._write([member])
            return member.answer()
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
        """An ``async`` caller took the lead: pass it on (to a synchronous caller that queued
        meanwhile, else to a thread; see ``_hand_over``)."""
        with self._lock:
            if self._closed:  # close() answered the queue already
                self._leading = False
                return
            self._hand_over()

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
                self._write_failed(batch, own, exc)
                if not isinstance(exc, Exception):
                    raise

    def _write_failed(self, batch: list[Member], own: Member | None, exc: BaseException) -> None:
        """Writing ``batch`` raised ``exc`` on this thread instead of answering it.

        Members whose answer stands (``Member.settled``: their transaction committed, or
        they failed outside one) get it. An interrupt (a ``BaseException`` that is not an
        ``Exception``: Ctrl-C) is this thread's caller's alone: the other members, rolled
        back, go back to the front of the queue, in order, and the lead passes on, so the
        next leader writes them (decision 28: a failing append fails alone). An
        ``Exception`` here is a bug: each member not stored fails with its own copy of it.
        """
        interrupted = not isinstance(exc, Exception)
        answered: list[Member] = []
        again: list[Member] = []
        for member in batch:
            if member.done:
                continue
            if member.settled():
                answered.append(member)
            elif not interrupted:
                member.result = None
                member.error = own_copy(exc)
                member.commit = None
                answered.append(member)
            elif member is not own:  # own: its caller gets the interrupt, raised here
                member.unanswer()
                again.append(member)
        self._finish_all(answered)
        if not interrupted:
            return
        with self._lock:
            if own is not None and own in self._queue:
                self._queue.remove(own)
            # A synchronous caller that gave up meanwhile (``_give_up``) is not queued again.
            again = [m for m in again if m.wake is not None or m.future is not None]
            if self._closed:  # close() answered the queue: these get what it gave
                refused, again = again, []
            else:
                refused = []
                self._queue[:0] = again
            self._hand_over()
        for member in refused:
            member.error = StoreClosedError(self._store.path)
        self._finish_all(refused)

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
            return
        except RuntimeError:
            # The pool takes no more work: the interpreter is shutting down (the main
            # thread has ended; a service thread's event loop still runs). A thread of
            # its own leads, as OffLoopCalls does (decision 48): nobody is left waiting.
            pass
        try:
            threading.Thread(
                target=self._lead, args=(None,), name="eventstore-group-commit", daemon=True
            ).start()
        except RuntimeError as exc:  # no thread can start any more: answer, never strand
            stranded, self._queue = self._queue, []
            self._leading = False
            for member in stranded:
                member.error = RuntimeError(
                    f"event store {self._store.path!r}: no thread could be started to write "
                    f"this append ({exc}), so nothing of it was stored. The interpreter is "
                    "shutting down: append before it does, or synchronously."
                )
            self._finish_all(stranded)

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


__all__ = [
    "GATHER_WAIT",
    "MAX_GROUP",
    "GroupCommitter",
    "GroupTransaction",
    "Member",
    "UnitMember",
    "own_copy",
]
