"""``NatsEventBus``: the store's log on a JetStream stream, read like the store.

The relay (``relay.py``) publishes each stored event to the stream ``EVENTS``
(by default) in position order; the bus reads it back as an ``EventSource``, a
``PagedEventSource`` and a ``CommitSource``, so ``ProjectionManager(bus)`` and
``follow(bus)`` run unchanged, and it serves consumer groups (``consumers.py``).

Threads: the nats-py client lives on the bus's own I/O thread and loop. The
synchronous methods (``read_all``, ``read_page``, ``head_position``, listener
registration) wait for that loop, so they are safe from any other thread or
event loop (a notebook's included) and must never be called on the I/O thread
itself, that is inside a commit listener or a subscription handler running
there (they raise ``RuntimeError`` instead of waiting for themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from ..core.events import Event
from ..core.ports import CommitListener, EventSource, Page, read_page
from .connection import IOThread, NatsOptions
from .envelope import MSG_ID, POSITION, decode_event, filter_subjects
from .errors import BusClosedError, BusHistoryTruncatedError, StreamConfigMismatchError

if TYPE_CHECKING:
    from .consumers import DeadLetterEntry, GroupSubscription

log = logging.getLogger("eventstore.nats")

DEFAULT_STREAM = "EVENTS"
DEFAULT_PREFIX = "events"
_CHUNK = 1000  # messages one batched direct get asks for, at most
_SCAN_LIMIT = 5000  # messages one read looks at, at most, before it returns what it found


#: Characters a stream name or subject prefix of a bus may not hold: NATS refuses the
#: first ones, and ``~`` joins a bus's names to its side streams' (side_streams.py).
_NOT_IN_STREAM_NAME = set(" \t\r\n\f.*>/\\~")
_NOT_IN_PREFIX_TOKEN = set(" \t\r\n\f*>~")
_MAX_PREFIX = 256


def check_stream_name(stream: str) -> None:
    """Raise ``ValueError`` unless ``stream`` can name a bus's stream."""
    bad = sorted({c for c in stream if c in _NOT_IN_STREAM_NAME or not c.isprintable()})
    if not stream or bad:
        raise ValueError(
            f"stream name {stream!r} cannot name a bus's stream: "
            + (f"it holds {''.join(bad)!r}" if bad else "it is empty")
            + ". Use letters, digits, '_' and '-' (NATS refuses '.', '*', '>', spaces and "
            "slashes; '~' is kept for the bus's side streams, <stream>~DLQ and so on)."
        )


def check_subject_prefix(prefix: str) -> None:
    """Raise ``ValueError`` unless ``prefix`` can be a bus's subject prefix."""
    tokens = prefix.split(".")
    bad = sorted({c for c in prefix if c in _NOT_IN_PREFIX_TOKEN or not c.isprintable()})
    if not prefix or bad or "" in tokens or len(prefix) > _MAX_PREFIX:
        if bad:
            why = f"it holds {''.join(bad)!r}"
        elif len(prefix) > _MAX_PREFIX:
            why = f"it is {len(prefix)} characters long, over {_MAX_PREFIX}"
        else:
            why = "it has an empty token"
        raise ValueError(
            f"subject prefix {prefix!r} cannot be a bus's subject prefix: {why}. Use tokens "
            "of letters, digits, '_' and '-' joined by '.' (es.acme); NATS refuses '*', '>' "
            "and spaces in a literal subject, and '~' is kept for the side streams' subjects "
            "(<prefix>~dlq.<group>)."
        )


class StoredMessage:
    """One message of the stream: its sequence, the position it claims, and its event."""

    __slots__ = ("event", "msg_id", "position", "seq")

    def __init__(self, seq: int, msg_id: str, position: int, event: Event | None) -> None:
        self.seq = seq
        self.msg_id = msg_id
        self.position = position
        self.event = event


class NatsEventBus:
    """The event log on a JetStream stream (``EVENTS``, created when missing).

    ``servers``: a URL, a comma-separated list or a list of URLs (a cluster).
    ``store``: the event store the relay publishes from; with it, reads older
    than the stream retains come from the store, readers reject positions past
    the store's head (a forged message cannot move a checkpoint), and
    ``head_position()`` is the store's head (so a stopped relay shows as lag).
    ``max_age`` (seconds), ``max_bytes``, ``replicas``, ``duplicate_window``
    (seconds) configure the stream; an existing stream configured otherwise is
    refused. Connection keywords: ``user``, ``password``, ``token``,
    ``nkeys_seed``, ``user_credentials`` (a creds file), ``tls_ca``,
    ``tls_cert``, ``tls_key``, ``name``, ``connect_timeout``,
    ``reconnect_time_wait``, ``max_reconnect_attempts``.
    """

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        stream: str = DEFAULT_STREAM,
        subject_prefix: str = DEFAULT_PREFIX,
        store: EventSource | None = None,
        max_age: float | None = None,
        max_bytes: int | None = None,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        request_timeout: float = 5.0,
        **connect: Any,
    ) -> None:
        check_stream_name(stream)
        check_subject_prefix(subject_prefix)
        self.options = NatsOptions.of(servers, **connect)
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.store = store
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.replicas = replicas
        self.duplicate_window = duplicate_window
        self.request_timeout = request_timeout
        self.io: IOThread | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._listeners: list[CommitListener] = []
        self._lock = threading.Lock()
        self._head = 0  # the highest position seen on the stream, live or read
        self._cursor: tuple[int, int] | None = None  # (position read up to, next sequence)
        self._last_error: Exception | None = None  # the client's last error (error_cb)
        self._closing = False

    # -- opening and closing -------------------------------------------------------------
    def open(self) -> NatsEventBus:
        """Connect (on the bus's I/O thread) and make sure the stream exists; sync callers."""
        if self.io is None:
            self.io = IOThread(f"nats-bus-{self.stream}")
            try:
                self.io.run(self._open())
            except BaseException:
                with contextlib.suppress(Exception):
                    self.io.run(self._close(), timeout=10)
                self.io.stop()
                self.io = None
                raise
        return self

    def close(self) -> None:
        io, self.io = self.io, None
        if io is None:
            return
        with contextlib.suppress(Exception):
            io.run(self._close(), timeout=10)
        io.stop()

    async def __aenter__(self) -> NatsEventBus:
        await asyncio.to_thread(self.open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> NatsEventBus:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _open(self) -> None:
        self._closing = False
        self._nc = await self.options.connect(
            # The live subscription must not get back what this connection publishes: a
            # relay on this bus would parse every event it sent twice (a third of its
            # cost); it reports what the stream took through _on_relayed instead.
            no_echo=True,
            reconnected_cb=self._on_reconnected,
            disconnected_cb=self._on_disconnected,
            closed_cb=self._on_closed,
            error_cb=self._on_error,
        )
        self._js = self._nc.jetstream(timeout=self.request_timeout)
        await self.ensure_stream()
        await self._nc.subscribe(f"{self.subject_prefix}.>", cb=self._on_live)

    async def _close(self) -> None:
        self._closing = True
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _on_reconnected(self) -> None:
        log.info("bus reconnected to %s", self._nc.connected_url if self._nc else "?")
        self._notify(self._head)

    async def _on_disconnected(self) -> None:
        log.info("bus disconnected from NATS; reconnecting")

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        log.debug("nats client error: %r", exc)

    async def _on_closed(self) -> None:
        if not self._closing:
            log.error(
                "bus %r: the NATS connection was closed (%s) and does not reconnect; the "
                "relay, readers and consumer groups on this bus are stopped until it is "
                "closed and opened again",
                self.stream,
                self._last_error or "by the server",
            )

    @property
    def client(self) -> Client:
        if self._nc is None or self.io is None:
            raise BusClosedError(self.stream)
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None or self.io is None:
            raise BusClosedError(self.stream)
        return self._js

    def _io(self) -> IOThread:
        if self.io is None:
            raise BusClosedError(self.stream)
        return self.io

    # -- the stream ----------------------------------------------------------------------
    def stream_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.stream,
            subjects=[f"{self.subject_prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=self.max_age or 0,
            max_bytes=self.max_bytes if self.max_bytes is not None else -1,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window,
            allow_direct=True,
        )

    @staticmethod
    def _compared(config: api.StreamConfig) -> dict[str, object]:
        return {
            "subjects": sorted(config.subjects or []),
            "retention": str(getattr(config.retention, "value", config.retention) or "limits"),
            "storage": str(getattr(config.storage, "value", config.storage) or "file"),
            "max_age": float(config.max_age or 0),
            "max_bytes": int(config.max_bytes if config.max_bytes is not None else -1),
            "num_replicas": int(config.num_replicas or 1),
            "duplicate_window": float(config.duplicate_window or 0),
            "allow_direct": bool(config.allow_direct),
        }

    async def ensure_stream(self) -> None:
        """Create the stream, or check an existing one has this bus's configuration."""
        wanted = self.stream_config()
        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(wanted)
            return
        expected, actual = self._compared(wanted), self._compared(info.config)
        if expected != actual:
            raise StreamConfigMismatchError(self.stream, expected, actual)

    # -- live messages -------------------------------------------------------------------
    async def _on_live(self, msg: Msg) -> None:
        try:
            position = int((msg.headers or {}).get(POSITION, "0"))
        except ValueError:
            return
        if position > self._head and self._believable(position):
            self._head = position
        self._notify(position)

    def _on_relayed(self, position: int) -> None:
        """A relay on this bus saw the stream take events up to ``position``: wake readers."""
        if position > self._head:
            self._head = position
        self._notify(position)

    def _believable(self, position: int) -> bool:
        """False for a position past the store's head (a forged or foreign message)."""
        return self.store is None or position <= self.store.head_position()

    def _notify(self, head: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(head)
            except Exception:  # a listener must not break the bus
                log.exception("commit listener %r failed", listener)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(position)`` on the I/O thread when a message arrives on the stream."""
        with self._lock:
            self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # -- reading -------------------------------------------------------------------------
    def head_position(self) -> int:
        """The store's head when the bus has a store, else the highest position seen (local)."""
        if self.store is not None:
            return self.store.head_position()
        return self._head

    def read_all(
        self,
        after_position: int = 0,
        *,
        limit: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> list[Event]:
        """The events after ``after_position`` in position order, as the stream holds them."""
        events: list[Event] = []
        position = after_position
        while limit is None or len(events) < limit:
            want = 1000 if limit is None else min(1000, limit - len(events))
            page = self.read_page(position, limit=want, event_types=event_types)
            events.extend(page.events)
            if page.scanned_to <= position:
                break
            position = page.scanned_to
        return events

    def read_page(
        self,
        after_position: int,
        *,
        limit: int,
        event_types: Sequence[str] | None = None,
    ) -> Page:
        """One page after ``after_position`` and how far it looked (see ``core.ports.Page``)."""
        io = self._io()
        return io.run(self.read_page_async(after_position, limit=limit, event_types=event_types))

    async def read_page_async(
        self,
        after_position: int,
        *,
        limit: int,
        event_types: Sequence[str] | None = None,
    ) -> Page:
        return await self._io().call(self._read_page(after_position, limit, event_types))

    async def _read_page(self, after: int, limit: int, event_types: Sequence[str] | None) -> Page:
        if self.client.is_closed:
            # nats-py gives up for good after some server errors (a protocol violation):
            # say so, instead of promising a reconnection that never comes.
            raise ConnectionError(
                f"bus {self.stream!r} cannot read after position {after}: its NATS connection "
                f"was closed ({self._last_error or 'by the server'}) and does not reconnect; "
                "close the bus and open it again"
            )
        if not self.client.is_connected:
            # Fail at once instead of after request_timeout: a projection runner
            # calls this from its event loop, which a wait would freeze.
            raise ConnectionError(
                f"bus {self.stream!r} cannot read after position {after}: the NATS client "
                "is not connected (it reconnects on its own); read again later"
            )
        info = await self.js.stream_info(self.stream)
        first, last = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0 or last < first:
            if self.store is None and last > 0 and (after == 0 or after < self._head):
                # Every message is gone (max age, max bytes, a purge), and the reader had
                # not read them: every event has a position of 1 or more, and this bus saw
                # events up to self._head. (A reader at or past that head is up to date.)
                raise BusHistoryTruncatedError(self.stream, after, None)
            return await self._beyond_stream(after, limit, event_types, None)
        start = await self._seek(after, first, last)
        if start is None:  # nothing after `after` in the stream
            return Page([], after)
        if start.position > after + 1 and (
            start.seq == first or await self._first_readable(first, start.seq - 1) is None
        ):
            # The stream's first event is past the reader: older messages were removed
            # (max age, max bytes), or the stream is newer than the store (a new server,
            # the relay going on from its checkpoint). Read the gap from the store, then
            # go on in the stream: a page that is not full says the reader is at the head.
            gap = await self._beyond_stream(after, limit, event_types, start.position)
            if len(gap.events) >= limit:
                return gap
            rest = await self._read_page(gap.scanned_to, limit - len(gap.events), event_types)
            return Page([*gap.events, *rest.events], rest.scanned_to)
        wanted = set(event_types) if event_types is not None else None
        events: list[Event] = []
        scanned = after
        store = self.store
        store_head = store.head_position() if store is not None else None
        seq = start.seq
        looked = 0
        while seq <= last and len(events) < limit and looked < _SCAN_LIMIT:
            size = min(_CHUNK, max(limit - len(events), 32))
            upto = min(last, seq + size - 1)
            batch = await self._get_many(seq, upto)
            for message in batch:
                looked += 1
                if message.event is None:
                    continue
                if message.position <= scanned:
                    log.warning(
                        "stream %s seq %d claims position %d, not after %d: ignored",
                        self.stream,
                        message.seq,
                        message.position,
                        scanned,
                    )
                    continue
                if store is not None and store_head is not None and message.position > store_head:
                    store_head = await asyncio.to_thread(store.head_position)
                    if message.position > store_head:
                        log.warning(
                            "stream %s seq %d claims position %d past the store's head %d: "
                            "ignored (a forged or foreign message)",
                            self.stream,
                            message.seq,
                            message.position,
                            store_head,
                        )
                        continue
                scanned = message.position
                self._head = max(self._head, scanned)
                if wanted is None or message.event.event_type in wanted:
                    events.append(message.event)
                    if len(events) >= limit:
                        seq = message.seq + 1
                        break
            else:
                seq = upto + 1
                continue
            break
        self._cursor = (scanned, seq)
        return Page(events, events[-1].position if len(events) >= limit else scanned)

    async def _beyond_stream(
        self,
        after: int,
        limit: int,
        event_types: Sequence[str] | None,
        first_position: int | None,
    ) -> Page:
        """Events the stream does not hold (expired, or never relayed yet): from the store."""
        if self.store is None:
            if first_position is None:
                return Page([], after)
            raise BusHistoryTruncatedError(self.stream, after, first_position)
        store = self.store
        upto = first_position - 1 if first_position is not None else None
        if upto is None:  # an empty stream (expired, or nothing relayed yet): all from the store
            page: Page = await asyncio.to_thread(
                read_page, store, after, limit=limit, event_types=event_types
            )
            return page
        events = await asyncio.to_thread(
            store.read_all, after, limit=limit, event_types=event_types
        )
        events = [e for e in events if e.position <= upto]
        if len(events) >= limit:
            return Page(events, events[-1].position)
        return Page(events, upto)

    async def _seek(self, after: int, first: int, last: int) -> StoredMessage | None:
        """The first message after position ``after``: binary search over direct gets."""
        if self._cursor is not None and self._cursor[0] == after and self._cursor[1] >= first:
            if self._cursor[1] > last:
                return None
            found = await self._first_readable(self._cursor[1], last)
            if found is not None:
                return found
        lo, hi = first, last
        result: StoredMessage | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            message = await self._first_readable(mid, hi)
            if message is None:
                hi = mid - 1
                continue
            if message.position > after:
                result = message
                hi = mid - 1
            else:
                lo = message.seq + 1
        return result

    async def _first_readable(self, seq: int, last: int) -> StoredMessage | None:
        """The first event envelope at or after ``seq``: deleted and foreign messages are
        stepped over (a foreign one has no position, and the binary search of ``_seek``
        relies on positions rising with sequence numbers)."""
        while seq <= last:
            message = await self.get(seq)
            if message is not None and message.event is not None:
                return message
            seq += 1
        return None

    async def get(self, seq: int) -> StoredMessage | None:
        """The message at ``seq`` (None when deleted); its event None when not an envelope."""
        try:
            raw = await self.js.get_msg(self.stream, seq, direct=True)
        except NotFoundError:
            return None
        return self._stored(seq, raw.headers or {}, raw.data or b"")

    def _stored(self, seq: int, headers: dict[str, str], data: bytes) -> StoredMessage:
        try:
            position = int(headers.get(POSITION, "0"))
        except ValueError:
            position = 0
        event: Event | None
        try:
            event = decode_event(data)
        except (DecodeError, ValueError):
            event = None
        if event is not None and (event.position != position or position <= 0):
            event = None
        if event is None:
            log.warning("stream %s seq %d is not an event envelope: ignored", self.stream, seq)
        return StoredMessage(seq, headers.get(MSG_ID, ""), position, event)

    async def _get_many(self, first: int, last: int) -> list[StoredMessage]:
        """The messages from ``first`` to ``last`` (deleted ones left out), in one batched
        direct get (nats-server 2.11+): the replies stream in, then an end-of-batch status.

        Asked without headers first (``no_hdr``): nats-py parses every header of every
        reply character by character, two thirds of a read's cost with the eight headers
        a direct get adds. The envelope carries the event's id and position, and the
        end-of-batch status names the last sequence sent, so when as many replies came
        as the sequences they span, each one's sequence is known; when some are
        missing (deleted messages), the range is asked again with headers.
        """
        payloads, last_sent = await self._direct_batch(first, last)
        if not payloads or len(payloads) == last_sent - first + 1:
            return [self._stored_bare(first + i, data) for i, data in enumerate(payloads)]
        return await self._get_many_with_headers(first, last)

    async def _get_many_with_headers(self, first: int, last: int) -> list[StoredMessage]:
        nc = self.client
        inbox = nc.new_inbox()
        out: list[StoredMessage] = []
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_reply(msg: Msg) -> None:
            headers = msg.headers or {}
            status = headers.get("Status")
            if status:
                if not done.done():
                    done.set_result(status)
                return
            seq = int(headers.get("Nats-Sequence", "0"))
            if first <= seq <= last:
                out.append(self._stored(seq, headers, msg.data or b""))

        await self._direct_request(first, last, inbox, on_reply, done, no_headers=False)
        return out

    async def _direct_batch(self, first: int, last: int) -> tuple[list[bytes], int]:
        """The payloads of a header-less batched direct get, and the last sequence sent."""
        nc = self.client
        inbox = nc.new_inbox()
        payloads: list[bytes] = []
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        last_sent = [first - 1]

        async def on_reply(msg: Msg) -> None:
            headers = msg.headers
            if headers and headers.get("Status"):
                with contextlib.suppress(ValueError):
                    last_sent[0] = int(headers.get("Nats-Last-Sequence", first - 1))
                if not done.done():
                    done.set_result(headers["Status"])
                return
            payloads.append(msg.data or b"")

        await self._direct_request(first, last, inbox, on_reply, done, no_headers=True)
        return payloads, last_sent[0]

    async def _direct_request(
        self,
        first: int,
        last: int,
        inbox: str,
        on_reply: Callable[[Msg], Awaitable[None]],
        done: asyncio.Future[str],
        *,
        no_headers: bool,
    ) -> None:
        nc = self.client
        sub = await nc.subscribe(inbox, cb=on_reply)
        try:
            asked: dict[str, object] = {"seq": first, "batch": last - first + 1}
            if no_headers:
                asked["no_hdr"] = True
            request = json.dumps(asked).encode()
            await nc.publish(f"$JS.API.DIRECT.GET.{self.stream}", request, reply=inbox)
            status = await asyncio.wait_for(done, self.request_timeout)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if status not in ("204", "404"):
            raise ConnectionError(
                f"batched direct get of stream {self.stream!r} seq {first}..{last} answered "
                f"status {status}"
            )

    def _stored_bare(self, seq: int, data: bytes) -> StoredMessage:
        """A message read without headers: its id and position are the envelope's."""
        try:
            event: Event | None = decode_event(data)
        except (DecodeError, ValueError):
            event = None
        if event is None or event.position <= 0 or not event.event_id:
            log.warning("stream %s seq %d is not an event envelope: ignored", self.stream, seq)
            return StoredMessage(seq, "", 0, None)
        return StoredMessage(seq, event.event_id, event.position, event)

    async def last_message(self) -> StoredMessage | None:
        """The stream's last message (its id and claimed position), None when it is empty."""
        return await self._io().call(self._last_message())

    async def _last_message(self) -> StoredMessage | None:
        info = await self.js.stream_info(self.stream)
        first, seq = info.state.first_seq, info.state.last_seq
        while seq >= max(first, 1):
            message = await self.get(seq)
            if message is not None:
                return message
            seq -= 1
        return None

    # -- consumer groups (consumers.py) ---------------------------------------------------
    async def subscribe(
        self,
        name: str,
        handler: Callable[[Event], Awaitable[None] | None],
        *,
        event_types: Sequence[object] | None = None,
        aggregate_types: Sequence[str] | None = None,
        max_deliver: int = 5,
        backoff: Sequence[float] = (),
        ack_wait: float = 30.0,
        batch: int = 64,
    ) -> GroupSubscription:
        """Join consumer group ``name``: every worker with that name shares its events.

        ``handler(event)`` (plain or ``async``) gets each stored event; raising
        means "not handled": the event is delivered again after the next
        ``backoff`` entry (seconds), up to ``max_deliver`` deliveries, then it
        is set aside as a dead letter (``bus.dead_letters(name)``). Every worker
        of a group passes the same filters, ``max_deliver`` and ``ack_wait``: a
        worker that differs is refused (``ConsumerConfigMismatchError``, or its
        subclass ``ConsumerFilterMismatchError`` for the filters).
        """
        from .consumers import GroupSubscription

        subscription = GroupSubscription(
            self,
            name,
            handler,
            event_types=event_types,
            aggregate_types=aggregate_types,
            max_deliver=max_deliver,
            backoff=tuple(backoff),
            ack_wait=ack_wait,
            batch=batch,
        )
        await subscription.start()
        return subscription

    async def dead_letters(self, name: str) -> list[DeadLetterEntry]:
        """The events consumer group ``name`` gave up on, oldest first."""
        from .consumers import read_dead_letters

        return await self._io().call(read_dead_letters(self, name))

    async def redeliver(self, name: str, event_id: str) -> None:
        """Send dead letter ``event_id`` back to group ``name`` (its retry subject)."""
        from .consumers import redeliver

        await self._io().call(redeliver(self, name, event_id))

    async def move_old_side_streams(self) -> dict[str, int]:
        """Move the consumer groups' dead letters, pending retries and advisories from the
        side streams named as before 2026-12-02 (``<stream>_DLQ``, ``_RETRY``,
        ``_ADVISORIES``) to the current ones (``<stream>~DLQ`` and so on); see
        ``OldSideStreamsError``. Returns how many of each were moved."""
        from .side_streams import move_old_side_streams

        return await self._io().call(move_old_side_streams(self))

    async def delete_consumer(self, name: str) -> None:
        """Remove consumer group ``name``'s durable consumers (its dead letters stay)."""
        from .consumers import delete_consumer

        await self._io().call(delete_consumer(self, name))

    def filter_subjects(
        self, event_types: list[str] | None, aggregate_types: list[str] | None
    ) -> list[str]:
        return filter_subjects(self.subject_prefix, event_types, aggregate_types)

    def __repr__(self) -> str:
        return f"NatsEventBus({','.join(self.options.servers)}, stream={self.stream!r})"
