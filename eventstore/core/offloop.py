"""Synchronous calls for ``async`` callers, run off the event loop many per thread hand-off.

``asyncio.to_thread`` costs two wake-ups per call: a pool thread's (the queue ``put``
in ``ThreadPoolExecutor.submit``) and the loop's (``call_soon_threadsafe`` writes to its
self-pipe). On a busy loop each of them also lets go of the GIL and waits to get it
back, so with 64 clients a cheap call (a cached aggregate brought up to date: one
indexed read that finds nothing) cost the loop more in hand-offs than in work
(docs/decisions.md, "Repository.load_async hands its loads to a thread in batches").

``OffLoopCalls`` queues the calls; one job on a shared pool of worker threads
(``eventstore-offloop``) runs whatever is queued, in order, each in the caller's
``contextvars`` context (as ``to_thread`` does: tenant, principal and trace context
survive), and hands the answers back to each loop in chunks of ``ANSWER_EVERY``, so
an answer waits for at most that many calls before its caller resumes. The job is
submitted to the pool directly, not through ``loop.run_in_executor``: nothing awaits
the job itself, and the asyncio future that method chains to it would wake the loop
once more per job for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: The most calls run before their answers go back to the loop: bounds how long a
#: finished call waits for the ones after it (a few hundred microseconds each at most).
ANSWER_EVERY = 8

#: The most jobs running one queue's calls at once. A second job starts only when more
#: than ``ANSWER_EVERY`` calls wait per running one, so CPU-bound calls (SQLite loads)
#: mostly run on one thread, and calls that wait on a server (PostgreSQL) still overlap.
DEFAULT_WORKERS = 4

# The worker threads every OffLoopCalls shares (made on first use; idle threads only
# wait on the pool's queue).
_POOL_THREADS = 8
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix="eventstore-offloop")
        return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


class _Call:
    __slots__ = ("args", "context", "error", "fn", "future", "loop", "result")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None


def _settle(calls: list[_Call]) -> None:
    """On the loop: answer each call that is still awaited (a cancelled caller is not)."""
    for call in calls:
        if call.future.done():
            continue
        if call.error is None:
            call.future.set_result(call.result)
            continue
        try:
            call.future.set_exception(call.error)
        except TypeError:  # StopIteration cannot be set on a future
            error = RuntimeError(f"{call.fn!r} raised StopIteration")
            call.future.set_exception(error)


def _answer(calls: list[_Call]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
    for call in calls:
        by_loop.setdefault(call.loop, []).append(call)
    for loop, answered in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed
            loop.call_soon_threadsafe(_settle, answered)


class OffLoopCalls:
    """A queue of synchronous calls run on a worker thread, in order, for ``async`` callers.

    Same answers as ``await asyncio.to_thread(fn, *args)`` (results, exceptions,
    context variables); calls queued while others run join the running batch.
    """

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, got {workers}")
        self.workers = workers
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._running = 0

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread; the loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        call = _Call(fn, args, loop)
        with self._lock:
            self._queue.append(call)
            start = self._running == 0 or (
                self._running < self.workers and len(self._queue) > ANSWER_EVERY * self._running
            )
            if start:
                self._running += 1
        if start:
            try:
                _shared_pool().submit(self._drain)
            except RuntimeError:
                # The interpreter is shutting down (the pool takes no new jobs): a thread
                # of its own, so no queued call waits for a job that never runs.
                threading.Thread(target=self._drain, name="eventstore-offloop", daemon=True).start()
        result: T = await call.future
        return result

    def _drain(self) -> None:
        """Run queued calls until none is left; answer them in chunks."""
        done: list[_Call] = []
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._running -= 1
                        return
                    call = self._queue.popleft()
                if call.future.cancelled():  # like a to_thread job cancelled before it ran
                    continue
                try:
                    call.result = call.context.run(call.fn, *call.args)
                except BaseException as exc:  # handed to the caller, as to_thread does
                    call.error = exc
                done.append(call)
                if len(done) >= ANSWER_EVERY:
                    _answer(done)
                    done = []
        finally:
            _answer(done)


__all__ = ["ANSWER_EVERY", "DEFAULT_WORKERS", "OffLoopCalls"]
