"""``Relay``: the store's log published to the bus in strict position order (the outbox).

Each message carries ``Nats-Msg-Id`` (the event id) and
``Nats-Expected-Last-Msg-Id`` (the previous event's id): the server stores a
message only when the stream's last message is its predecessor, so after one
failed publish every later one of the pipeline is rejected (err 10070) instead
of stored out of order, and a second relay on the same store is refused the
same way. On start and after any failure the relay reads the stream's last
message and resumes after the larger of its stored position and that message's
position, so correctness does not depend on the duplicate window. Its position
is a checkpoint in the store (``CheckpointStore``), named ``relay:<stream>``.

An event bigger than the server's ``max_payload`` (headers included) is never
sent: the relay publishes what comes before it and raises ``EventTooLargeError``
naming it; it stops there rather than skip it, so the stream stays a complete,
ordered copy of the store (docs/nats.md, "The relay").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.msg import Msg

from ..core import instrumentation
from ..core.errors import EventStoreError
from ..core.events import Event
from ..core.follow import CommitSignal
from .bus import NatsEventBus
from .envelope import encode_event, headers_for, subject_for

log = logging.getLogger("eventstore.nats.relay")

EXPECTED_LAST_MSG_ID_MISMATCH = 10070
EXPECTED_LAST_SEQUENCE_MISMATCH = 10071
#: Another writer got there first: resume from the stream, nothing is wrong.
OVERTAKEN = (EXPECTED_LAST_MSG_ID_MISMATCH, EXPECTED_LAST_SEQUENCE_MISMATCH)
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
#: Seconds before the same failure is logged again at its level (between: DEBUG).
_RELOG = 60.0


class RelayStore(Protocol):
    """What the relay needs of a store: its log, and a checkpoint for its own position."""

    def read_all(
        self,
        after_position: int = 0,
        *,
        limit: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> list[Event]: ...

    def head_position(self) -> int: ...

    def load_checkpoint(self, name: str) -> int: ...

    def save_checkpoint(
        self, name: str, position: int, *, scanned_position: int | None = None
    ) -> None: ...


@dataclass(frozen=True)
class RelayStatus:
    """How far the relay is: ``lag`` positions and ``lag_seconds`` behind the store's head."""

    position: int
    head: int
    lag: int
    lag_seconds: float
    published: int
    running: bool
    last_error: str | None


class PublishRejected(Exception):
    """The server refused a message (``err_code``), or acknowledged none in time."""

    def __init__(self, event: Event, err_code: int, description: str) -> None:
        self.event = event
        self.err_code = err_code
        self.description = description
        super().__init__(
            f"publishing event {event.event_id} (position {event.position}) failed: "
            f"{description} (err_code {err_code})"
        )


class EventTooLargeError(PublishRejected, EventStoreError):
    """An event is bigger on the bus than the NATS server's ``max_payload``: the relay cannot
    publish it, and stops before it (``size`` and ``limit`` in bytes)."""

    def __init__(self, event: Event, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        description = (
            f"event {event.event_id} (position {event.position}, aggregate "
            f"{event.aggregate_id[:80]!r}, type {event.event_type}) is {size} bytes on the bus, "
            f"over the NATS server's max_payload of {limit} bytes. The relay publishes "
            "nothing after it (the stream keeps the store's order, and a skipped event would "
            "be missing for every reader of the bus): raise max_payload in the server's "
            "configuration (the relay goes on once its connection sees the new limit), or "
            "keep large blobs out of events (store a reference)"
        )
        super().__init__(event, 0, description)
        self.args = (description,)

    def __str__(self) -> str:
        return self.description


def _published_size(data: bytes, headers: dict[str, str]) -> int:
    """The bytes the server counts against ``max_payload``: payload and header block
    (``NATS/1.0``, ``key: value`` lines, CRLFs, as nats-py writes them)."""
    return len(data) + 12 + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())


class _Acks:
    """The acknowledgements of one pipelined batch, filed by index as they arrive."""

    __slots__ = ("_loop", "_offset", "_received", "_waiter", "counted", "data")

    def __init__(self, count: int, offset: int) -> None:
        self.data: list[bytes | None] = [None] * count
        self.counted = 0  # acks before this index are read and counted in ``published``
        self._offset = offset  # where the index starts in "<inbox>.<index>"
        self._received = 0
        self._waiter: tuple[int, asyncio.Future[None]] | None = None
        self._loop = asyncio.get_running_loop()

    async def on_ack(self, msg: Msg) -> None:
        try:
            index = int(msg.subject[self._offset :])
        except ValueError:
            return
        if 0 <= index < len(self.data) and self.data[index] is None:
            # A JetStream ack always has a body. An empty one is a status from the server
            # (503: no stream took the message, as while a cluster elects the stream's
            # leader): filed as the failure it is, never as "stored".
            self.data[index] = msg.data or _status_failure(msg)
            self._received += 1
            waiter = self._waiter
            if waiter is not None and self._received >= waiter[0] and not waiter[1].done():
                waiter[1].set_result(None)

    async def wait(self, lo: int, hi: int, timeout: float) -> None:
        """Return when ``data[lo:hi]`` are all in, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while None in self.data[lo:hi]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            future = self._loop.create_future()
            self._waiter = (max(hi, self._received + 1), future)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, remaining)
            self._waiter = None

    def close(self) -> None:
        if self._waiter is not None and not self._waiter[1].done():
            self._waiter[1].cancel()
        self._waiter = None


def _status_failure(msg: Msg) -> bytes:
    """An empty reply (a server status, not an ack) as an ack that says it failed."""
    headers = msg.headers or {}
    status = headers.get("Status", "")
    if status == "503":
        description = (
            "no responders: no stream took the message (a stream without a leader, as "
            "during an election, or a subject no stream captures)"
        )
    else:  # the first line only: nats-py leaves the next header in it
        description = (headers.get("Description", "").strip().splitlines() or ["an empty reply"])[0]
    error = {"err_code": 0, "description": f"status {status or '?'}: {description}"}
    return json.dumps({"error": error}).encode()


def _read_ack(data: bytes) -> tuple[bool, tuple[int, str] | None]:
    """(duplicate, (err_code, description) or None) of a JetStream publish ack; parses the
    JSON only when it may say something other than "stored" (the common case skips it).

    Only a reply naming the message's sequence is "stored": anything else (a status,
    a reply from something that is not JetStream) is a failure, so the relay never
    moves past an event the stream does not hold.
    """
    if b'"error"' not in data and b'"duplicate"' not in data:
        if b'"seq"' not in data:
            return False, (0, f"not a publish acknowledgement: {data[:200]!r}")
        return False, None
    try:
        ack = json.loads(data)
    except ValueError:
        return False, (0, f"unreadable acknowledgement {data[:200]!r}")
    error = ack.get("error") if isinstance(ack, dict) else None
    if error:
        return False, (int(error.get("err_code", 0)), str(error.get("description")))
    return bool(ack.get("duplicate")) if isinstance(ack, dict) else False, None


def _drop(future: asyncio.Future[Any] | None) -> None:
    """Forget a read-ahead: cancel it, and retrieve its outcome so none is left unobserved."""
    if future is not None:
        future.cancel()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())


class Relay:
    """Publishes ``store``'s events to ``bus`` after its last relayed position.

    ``await relay.publish_pending()`` publishes what is there and returns the
    count; ``await relay.run()`` keeps publishing (woken by the store's commit
    listener, and polling every ``poll_interval`` seconds for other processes'
    commits) until ``relay.stop()`` (docs/decisions.md, "Stop wins").
    ``window``: messages in flight at once; ``batch``: events read per store read.
    """

    def __init__(
        self,
        store: RelayStore,
        bus: NatsEventBus,
        *,
        batch: int = 1000,
        window: int = 512,
        ack_timeout: float = 5.0,
        poll_interval: float = 0.5,
        retry_interval: float = 0.5,
        name: str | None = None,
    ) -> None:
        if window < 1 or batch < 1:
            raise ValueError("Relay needs window >= 1 and batch >= 1")
        self.store = store
        self.bus = bus
        self.batch = batch
        self.window = window
        self.ack_timeout = ack_timeout
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self.checkpoint_name = name or f"relay:{bus.stream}"
        self._position: int | None = None
        self._last_id: str | None = None
        self._published = 0
        self._last_error: str | None = None
        self._running = False
        self._stopped = threading.Event()
        self._lock: asyncio.Lock | None = None
        self._empty_at: int | None = None  # the stream's last sequence when it was empty
        self._signal: CommitSignal | None = None

    # -- status -------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """The last position known to be on the stream (stored checkpoint before the first run)."""
        if self._position is None:
            return self.store.load_checkpoint(self.checkpoint_name)
        return self._position

    def status(self) -> RelayStatus:
        position = self.position
        head = self.store.head_position()
        lag_seconds = 0.0
        if head > position:
            pending = self.store.read_all(position, limit=1)
            if pending:
                lag_seconds = max(0.0, time.time() - pending[0].timestamp_micros / 1e6)
        return RelayStatus(
            position=position,
            head=head,
            lag=max(0, head - position),
            lag_seconds=lag_seconds,
            published=self._published,
            running=self._running,
            last_error=self._last_error,
        )

    # -- publishing ---------------------------------------------------------------------
    async def publish_pending(self) -> int:
        """Publish everything after the relayed position; the number of events the stream took.

        Raises the first failure (``PublishRejected``, a timeout, a lost
        connection) after resuming its bookkeeping, so a retry is safe.
        """
        io = self.bus.io
        if io is None:
            from .errors import BusClosedError

            raise BusClosedError(self.bus.stream)
        return await io.call(self._publish_pending())

    async def _publish_pending(self) -> int:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._position is None:
                await self._resume()
            before = self._published
            resumed = False  # one resume per call after the stream moved under the relay
            ahead: asyncio.Future[list[Event]] | None = None  # the next batch, read meanwhile
            try:
                while not self._stopped.is_set():
                    assert self._position is not None
                    if ahead is not None:
                        events, ahead = await ahead, None
                    else:
                        events = await self._read(self._position)
                    if not events:
                        break
                    if len(events) >= self.batch:
                        # Read the next batch from the store while this one is published;
                        # dropped below when this one fails (the relay resumes elsewhere).
                        ahead = asyncio.ensure_future(self._read(events[-1].position))
                    try:
                        with instrumentation.operation(
                            instrumentation.PUBLISH,
                            event_count=len(events),
                            first_position=events[0].position,
                        ):
                            await self._publish_batch(events)
                    except PublishRejected as exc:
                        _drop(ahead)
                        ahead = None
                        if exc.err_code not in OVERTAKEN or resumed:
                            raise
                        resumed = True
                        await self._resume()
            except BaseException as exc:
                _drop(ahead)
                self._last_error = str(exc) or type(exc).__name__
                self._position = None  # resume from the stream's last message next time
                raise
            self._last_error = None
            if instrumentation.installed() and self._position is not None:
                head = await asyncio.to_thread(self.store.head_position)
                instrumentation.record(instrumentation.RELAY_LAG, max(0, head - self._position))
            return self._published - before

    async def _read(self, after: int) -> list[Event]:
        return await asyncio.to_thread(self.store.read_all, after, limit=self.batch)

    async def _resume(self) -> None:
        """Resume after max(stored position, the stream's last message's position)."""
        stored = await asyncio.to_thread(self.store.load_checkpoint, self.checkpoint_name)
        last = await self.bus._last_message()
        # An empty stream has no last id to expect: expect its last sequence instead, so
        # a second relay cannot store the first event again once the duplicate window passed.
        info = await self.bus.js.stream_info(self.bus.stream)
        self._empty_at = int(info.state.last_seq) if last is None else None
        position, last_id = stored, None
        if last is not None:
            last_id = last.msg_id  # the next publish must follow whatever is last
            ours = await self._last_of_ours(last.seq)
            if ours is not None:
                position = max(stored, ours)
            if ours is None or last.event is None or ours != last.position:
                log.warning(
                    "stream %s's last message (seq %d, id %r) is not an event of this store; "
                    "resuming after position %d",
                    self.bus.stream,
                    last.seq,
                    last.msg_id,
                    position,
                )
        self._position, self._last_id = position, last_id
        if position > stored:
            await asyncio.to_thread(self.store.save_checkpoint, self.checkpoint_name, position)

    async def _is_ours(self, position: int, event_id: str) -> bool:
        found = await asyncio.to_thread(self.store.read_all, position - 1, limit=1)
        return bool(found) and found[0].position == position and found[0].event_id == event_id

    async def _last_of_ours(self, seq: int, look_back: int = 256) -> int | None:
        """The position of the stream's last message that is this store's event (at or before
        ``seq``, looking back at most ``look_back`` messages past foreign ones)."""
        for candidate in range(seq, max(seq - look_back, 0), -1):
            message = await self.bus.get(candidate)
            if message is None or message.event is None:
                continue
            if await self._is_ours(message.position, message.msg_id):
                return message.position
        return None

    async def _publish_batch(self, events: list[Event]) -> int:
        """Publish ``events`` pipelined, at most ``window`` in flight; every ack is awaited.

        The acks come to one inbox subscription as ``<inbox>.<index>``; the callback
        only files each one, and ``_settle`` waits once per half window (not once
        per message) for a contiguous range of them.
        """
        nc = self.bus.client
        inbox = nc.new_inbox()
        acks = _Acks(len(events), len(inbox) + 1)
        sub = await nc.subscribe(f"{inbox}.*", cb=acks.on_ack)
        prefix = self.bus.subject_prefix
        publish = nc.publish
        limit = nc.max_payload
        stored = settled = sent = 0
        step = self.window // 2 or 1
        try:
            previous = self._last_id
            for i, event in enumerate(events):
                data = encode_event(event)
                headers = self._headers(event, previous)
                size = _published_size(data, headers)
                if size > limit:
                    # The server would drop the connection (nats-py checks the payload only):
                    # settle what went before, then name the event.
                    stored += await self._settle(events, acks, settled, i)
                    raise EventTooLargeError(event, size, limit)
                await publish(
                    subject_for(prefix, event.aggregate_type, event.event_type, event.aggregate_id),
                    data,
                    reply=f"{inbox}.{i}",
                    headers=headers,
                )
                sent = i + 1
                previous = event.event_id
                if i + 1 - settled >= self.window:
                    stored += await self._settle(events, acks, settled, settled + step)
                    settled += step
            stored += await self._settle(events, acks, settled, len(events))
        except BaseException:
            # Count what the stream acknowledged before the failure (no waiting): the
            # relay resumes from the stream, but ``published`` must not forget them.
            self._count_arrived(events, acks, sent)
            raise
        finally:
            acks.close()  # never leave a waiter unresolved
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return stored

    def _count_arrived(self, events: list[Event], acks: _Acks, hi: int) -> None:
        """Move past the acks not counted yet of ``events[:hi]`` already in, in order, up to
        the first missing or failed one; never waits, never raises."""
        stored = 0
        for i in range(acks.counted, hi):
            data = acks.data[i]
            if data is None:
                break
            duplicate, error = _read_ack(data)
            if error is not None:
                break
            self._position, self._last_id = events[i].position, events[i].event_id
            acks.counted = i + 1
            if not duplicate:
                stored += 1
        self._published += stored

    def _headers(self, event: Event, previous: str | None) -> dict[str, str]:
        headers = headers_for(event, previous)
        if previous is None and self._empty_at is not None:
            headers[EXPECTED_LAST_SEQUENCE] = str(self._empty_at)
        return headers

    async def _settle(self, events: list[Event], acks: _Acks, lo: int, hi: int) -> int:
        """Wait for the acks of ``events[lo:hi]`` and read them in order: move the position
        past each one stored; raise the first failure (a rejection, or no ack in time)."""
        if hi <= lo:
            return 0
        await acks.wait(lo, hi, self.ack_timeout)
        stored = 0
        failure: PublishRejected | None = None
        for i in range(lo, hi):
            event = events[i]
            data = acks.data[i]
            if data is None:
                nc = self.bus._nc
                down = nc is not None and not nc.is_connected
                failure = PublishRejected(
                    event,
                    0,
                    f"no acknowledgement within {self.ack_timeout:g} s"
                    + (" (the NATS connection went down)" if down else ""),
                )
                break
            duplicate, error = _read_ack(data)
            if error is not None:
                failure = PublishRejected(event, error[0], error[1])
                break
            self._position, self._last_id = event.position, event.event_id
            acks.counted = i + 1
            if not duplicate:
                stored += 1
        self._published += stored
        if self._position is not None and (stored or failure is None):
            self.bus._on_relayed(self._position)  # wake readers before the checkpoint's fsync
            await asyncio.to_thread(
                self.store.save_checkpoint, self.checkpoint_name, self._position
            )
        if failure is not None:
            raise failure
        return stored

    # -- running ------------------------------------------------------------------------
    def stop(self) -> None:
        """End ``run()``, started or not; a stopped relay stays stopped (Stop wins)."""
        self._stopped.set()
        if self._signal is not None:
            self._signal.wake()

    async def run(self) -> None:
        """Publish until ``stop()``: wake on the store's commits, poll for other processes'
        commits, and back off ``retry_interval`` seconds after a failure (a server restart,
        a leader election, another relay ahead of this one)."""
        signal = self._signal = CommitSignal(self.store)
        self._running = True
        logged: tuple[str, float] | None = None  # the last failure logged, and when
        try:
            while not self._stopped.is_set():
                signal.arm()
                try:
                    await self.publish_pending()
                except Exception as exc:
                    code = getattr(exc, "err_code", None)
                    level = logging.INFO if code in OVERTAKEN else logging.WARNING
                    text, now = str(exc), time.monotonic()
                    if logged is not None and logged[0] == text and now - logged[1] < _RELOG:
                        level = logging.DEBUG  # the same failure again: status() holds it
                    else:
                        logged = (text, now)
                    log.log(level, "relay: %s; resuming in %.2fs", exc, self.retry_interval)
                    await asyncio.sleep(self.retry_interval)
                    continue
                logged = None
                if self._stopped.is_set():
                    break
                await signal.wait_async(self.poll_interval)
        finally:
            self._running = False
            signal.close()
