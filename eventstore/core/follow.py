"""Following the global log as it grows: live subscriptions over any event source.

A follower asks the source for events *after* the last position it yielded,
so it never skips or repeats one (positions are commit order, DESIGN
decision 5). Waiting between reads is cheap: a source that announces its own
commits (a ``CommitSource``, as ``SQLiteEventStore`` is) wakes the follower at
once, and every wait is bounded by ``poll_interval`` so commits
made by other processes are seen by polling.

One ``Subscription`` serves ``for`` and ``async for``; ``stop()`` ends either
cleanly, from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from types import TracebackType

from .arguments import check_count, check_position, event_type_names
from .events import Event
from .ports import CommitListener, CommitSource, EventSource, read_page
from .upcasting import Upcasters

DEFAULT_POLL_INTERVAL = 0.25


class CommitSignal:
    """Wakes waiters when the source commits in this process; waits are bounded by a timeout.

    Register before reading and wait after an empty read: a commit between the
    two leaves the signal set, so no wake-up is lost.
    """

    def __init__(self, source: object) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._async_waiters: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._remove: Callable[[CommitListener], None] | None = None
        self.is_live = False
        if isinstance(source, CommitSource):
            source.add_commit_listener(self._on_commit)
            self._remove = source.remove_commit_listener
            self.is_live = True

    def _on_commit(self, head: int = 0) -> None:
        # Called in the committing thread right after its commit: must not raise.
        self.wake()

    def wake(self) -> None:
        self._flag.set()
        with self._lock:
            waiters = list(self._async_waiters.items())
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(event.set)

    def arm(self) -> None:
        """Forget earlier wake-ups; call before reading."""
        self._flag.clear()
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            with self._lock:
                event = self._async_waiters.get(loop)
            if event is not None:
                event.clear()

    def wait(self, timeout: float) -> bool:
        """Block until a wake-up or ``timeout`` seconds; True when woken."""
        return self._flag.wait(timeout)

    async def wait_async(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        with self._lock:
            event = self._async_waiters.get(loop)
            if event is None:
                event = self._async_waiters[loop] = asyncio.Event()
                if self._flag.is_set():
                    event.set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        remove, self._remove = self._remove, None
        if remove is not None:
            remove(self._on_commit)
        self.wake()


def wake_on_close(listeners: Iterable[CommitListener]) -> None:
    """Wake every ``CommitSignal`` among a source's commit ``listeners``: for the source's
    ``close()``, once it is closed.

    A subscription (or projection run) waiting on the source then reads at once and
    meets the source's ``StoreClosedError``, instead of waiting out its
    ``poll_interval``. Other listeners are not called: nothing was committed.
    """
    for listener in listeners:
        signal = getattr(listener, "__self__", None)
        if isinstance(signal, CommitSignal):
            signal.wake()


class Subscription:
    """Events as they commit, in position order, for ``for`` and ``async for`` alike.

    Made by ``store.follow(after_position, ...)``. Iteration blocks (or
    awaits) while nothing new is committed and ends after ``stop()``. Use it
    as a context manager (``with`` or ``async with``) so the commit listener is
    removed when you are done; a subscription that is garbage collected removes
    it too.

    ``position`` is the position of the last event handed out: pass it as
    ``after_position`` to continue later exactly where this one stopped.
    ``scanned_position`` is at least that: with ``event_types``, once every
    event read has been handed out, the last position read past (continuing
    from it skips the events that did not match without reading them again).

    With ``upcasters`` every event is upcast before it is handed out, and
    ``event_types`` names upcast types: the stored types that upcast into them
    are read too, and events that do not become a wanted type are dropped. An
    upcaster that raises loses nothing: the events before the failing one are
    handed out first, then reading raises its error, and every later read starts
    at the failing event again (fix the upcaster and read on).
    """

    def __init__(
        self,
        source: EventSource,
        after_position: int = 0,
        *,
        event_types: Sequence[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        page_size: int = 1000,
        upcasters: Upcasters | None = None,
    ) -> None:
        check_position("after_position", after_position)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        check_count("page_size", page_size)
        self._source = source
        wanted = event_type_names(event_types)
        self._wanted = frozenset(wanted) if wanted is not None else None
        # The registry given, even empty (is not None, not its truth): upcasters
        # registered on it later apply (_stored_types asks it at each read).
        self._upcasters = upcasters
        self._event_types = wanted
        self.poll_interval = poll_interval
        self.page_size = page_size
        self.position = after_position
        self._read_position = after_position
        self._buffer: deque[Event] = deque()
        self._stopped = False
        self._signal = CommitSignal(source)
        self._finalizer = weakref.finalize(self, self._signal.close)

    # -- control -------------------------------------------------------------------
    @property
    def is_live(self) -> bool:
        """True when commits in this process wake the subscription at once (else it polls)."""
        return self._signal.is_live

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """End iteration (from any thread); a waiting ``for`` or ``async for`` returns promptly.

        Stop wins: a subscription stopped before its first read yields nothing,
        and a stopped subscription stays stopped (follow again to go on).
        """
        self._stopped = True
        self._finalizer()

    close = stop

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- reading -------------------------------------------------------------------
    @property
    def scanned_position(self) -> int:
        """Where to continue from without reading anything twice (see the class doc)."""
        return self.position if self._buffer else max(self.position, self._read_position)

    def _stored_types(self) -> list[str] | None:
        """The stored types to read: the wanted ones and those that upcast into them."""
        if self._upcasters is None or self._event_types is None:
            return self._event_types
        return self._upcasters.stored_types_for(self._event_types)

    def _fill(self) -> bool:
        """Read the next page into the buffer; True when it got something."""
        self._signal.arm()
        page = read_page(
            self._source,
            self._read_position,
            limit=self.page_size,
            event_types=self._stored_types(),
        )
        events = page.events
        # Past the events the filter skipped too, so an idle poll rereads nothing.
        read_to = page.scanned_to
        if self._upcasters is not None:
            # Upcast before moving on: an upcaster that raises must not cost the page.
            upcast = self._upcasters.upcast
            upcasted: list[Event] = []
            try:
                for event in events:
                    upcasted.append(upcast(event))
            except Exception:
                if not upcasted:
                    raise  # nothing read past: the next call reads this event again
                # Hand out the events before the failing one; it and those after it are
                # read again by the next call (which raises again if the upcaster still does).
                read_to = events[len(upcasted) - 1].position
            events = upcasted
            if self._wanted is not None:
                events = [e for e in events if e.event_type in self._wanted]
        self._read_position = max(self._read_position, read_to)
        if events:
            self._buffer.extend(events)
            return True
        if read_to != page.scanned_to:
            # The events before the failing one were all dropped: read it again now, so the
            # caller sees the upcaster's error.
            return self._fill()
        return False

    def _take(self, max_count: int | None) -> list[Event]:
        count = len(self._buffer) if max_count is None else min(max_count, len(self._buffer))
        taken = [self._buffer.popleft() for _ in range(count)]
        if taken:
            self.position = taken[-1].position
        return taken

    def _wait_before_next_read(self, deadline: float | None) -> float | None:
        """How long to wait for a commit before reading again; None once ``deadline`` passed.

        Never longer than ``poll_interval``, so commits by other processes are seen.
        """
        if deadline is None:
            return self.poll_interval
        remaining = deadline - _now()
        return min(self.poll_interval, remaining) if remaining > 0 else None

    def next_batch(self, timeout: float | None = None, max_count: int | None = None) -> list[Event]:
        """The events committed since the last call, waiting up to ``timeout`` seconds for one.

        Returns an empty list after the timeout or once stopped. ``None`` waits
        until something commits or ``stop()`` is called.
        """
        deadline = _deadline(timeout)
        while not self._stopped:
            if self._buffer or self._fill():
                return self._take(max_count)
            wait = self._wait_before_next_read(deadline)
            if wait is None or self._stopped:
                # Checked after the read armed the signal: a stop() before the arm would
                # otherwise be forgotten and cost a whole poll interval.
                return []
            self._signal.wait(wait)
        return []

    async def next_batch_async(
        self, timeout: float | None = None, max_count: int | None = None
    ) -> list[Event]:
        """``next_batch`` for ``asyncio``: awaits instead of blocking the loop."""
        deadline = _deadline(timeout)
        while not self._stopped:
            if self._buffer or self._fill():
                return self._take(max_count)
            wait = self._wait_before_next_read(deadline)
            if wait is None or self._stopped:
                # Checked after the read armed the signal: a stop() before the arm would
                # otherwise be forgotten and cost a whole poll interval.
                return []
            await self._signal.wait_async(wait)
        return []

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        batch = self.next_batch(max_count=1)
        if not batch:  # only once stopped: without a timeout next_batch waits for an event
            raise StopIteration
        return batch[0]

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        batch = await self.next_batch_async(max_count=1)
        if not batch:  # only once stopped
            raise StopAsyncIteration
        return batch[0]

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else ("live" if self.is_live else "polling")
        return f"Subscription(after position {self.position}, {state})"


def _now() -> float:
    return time.monotonic()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else _now() + timeout


def follow(
    source: EventSource,
    after_position: int = 0,
    *,
    event_types: Sequence[str] | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    page_size: int = 1000,
    upcasters: Upcasters | None = None,
) -> Subscription:
    """Follow any event source; ``SQLiteEventStore.follow`` is this with the store filled in."""
    return Subscription(
        source,
        after_position,
        event_types=event_types,
        poll_interval=poll_interval,
        page_size=page_size,
        upcasters=upcasters,
    )


__all__ = ["DEFAULT_POLL_INTERVAL", "CommitSignal", "Subscription", "follow", "wake_on_close"]
