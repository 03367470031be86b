"""Consumer groups on the bus: a durable pull consumer shared by every worker of a name.

Each worker fetches from the group's consumer on the events stream and from
its consumer on the retry stream (where ``bus.redeliver`` sends a dead letter
back, never into the events stream), with explicit acks. A handler that raises
means "not handled": the message is naked with the next ``backoff`` delay. The
server's max deliveries is one more than ``max_deliver``, so a worker that
gets the last allowed delivery and fails is still holding the message when it
publishes the dead letter (``Nats-Msg-Id`` = ``<consumer>:<event id>``, so a
repeat is a duplicate) and only then terminates it: no crash window loses it.
A worker killed meanwhile leaves the message to one more delivery, and after
that the server's max-deliveries advisory, captured in a stream, is the
backstop ``dead_letters`` reads too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import NotFoundError

from ..core.events import Event
from ..core.projections.functions import event_type_name
from ..core.projections.status import ProjectionFailure
from .envelope import MSG_ID, decode_event
from .errors import ConsumerFilterMismatchError, RedeliveryConfigError

if TYPE_CHECKING:
    from .bus import NatsEventBus

log = logging.getLogger("eventstore.nats.consumers")

CONSUMER = "Eventstore-Consumer"
DELIVERIES = "Eventstore-Deliveries"
ERROR_TYPE = "Eventstore-Error-Type"
ERROR = "Eventstore-Error"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
Handler = Callable[[Event], Awaitable[None] | None]


@dataclass(frozen=True)
class DeadLetterEntry(ProjectionFailure):
    """The core's ``DeadLetter`` of a consumer group: also how often it was delivered, by
    which consumer, and the event itself (``event``)."""

    deliveries: int = 0
    consumer: str = ""
    event: Event | None = None


def retry_stream(bus: NatsEventBus) -> str:
    return f"{bus.stream}_RETRY"


def dead_letter_stream(bus: NatsEventBus) -> str:
    return f"{bus.stream}_DLQ"


def advisory_stream(bus: NatsEventBus) -> str:
    return f"{bus.stream}_ADVISORIES"


def _retry_subject(bus: NatsEventBus, name: str) -> str:
    return f"{bus.subject_prefix}_retry.{name}"


def _dead_letter_subject(bus: NatsEventBus, name: str) -> str:
    return f"{bus.subject_prefix}_dlq.{name}"


async def _ensure_stream(bus: NatsEventBus, name: str, subjects: list[str]) -> None:
    try:
        await bus.js.stream_info(name)
    except NotFoundError:
        await bus.js.add_stream(
            api.StreamConfig(
                name=name,
                subjects=subjects,
                storage=api.StorageType.FILE,
                num_replicas=bus.replicas,
                allow_direct=True,
            )
        )


async def ensure_side_streams(bus: NatsEventBus) -> None:
    """The retry, dead-letter and advisory streams next to the events stream."""
    await _ensure_stream(bus, retry_stream(bus), [f"{bus.subject_prefix}_retry.>"])
    await _ensure_stream(bus, dead_letter_stream(bus), [f"{bus.subject_prefix}_dlq.>"])
    await _ensure_stream(
        bus,
        advisory_stream(bus),
        [
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{bus.stream}.*",
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{retry_stream(bus)}.*",
        ],
    )


class GroupSubscription:
    """One worker of consumer group ``name``; made by ``bus.subscribe``. ``await stop()`` or
    ``async with`` ends it (a stop before its start wins: it never fetches)."""

    def __init__(
        self,
        bus: NatsEventBus,
        name: str,
        handler: Handler,
        *,
        event_types: Sequence[object] | None,
        aggregate_types: Sequence[str] | None,
        max_deliver: int,
        backoff: tuple[float, ...],
        ack_wait: float,
        batch: int,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"consumer group name {name!r} may hold only letters, digits, '_' and '-' "
                "(it names a durable consumer and a subject token)"
            )
        if max_deliver < 1 or len(backoff) > max_deliver - 1 or any(b <= 0 for b in backoff):
            raise RedeliveryConfigError(name, max_deliver, backoff)
        self.bus = bus
        self.name = name
        self.handler = handler
        call = handler if inspect.isroutine(handler) else type(handler).__call__
        self._is_async = inspect.iscoroutinefunction(call)
        self.event_types = sorted(event_type_name(t) for t in event_types) if event_types else None
        self.aggregate_types = sorted(aggregate_types) if aggregate_types else None
        self.max_deliver = max_deliver
        self.backoff = backoff
        self.ack_wait = ack_wait
        self.batch = batch
        self.subjects = bus.filter_subjects(self.event_types, self.aggregate_types)
        self.handled = 0
        self.failed = 0
        self.dead_lettered = 0
        self._stopped = asyncio.Event()
        self._stop_requested = False
        self._task: asyncio.Future[None] | None = None

    def _config(self, subjects: list[str]) -> api.ConsumerConfig:
        config = api.ConsumerConfig(
            durable_name=self.name,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            max_deliver=self.max_deliver + 1,  # the last one is the worker's dead-lettering
            ack_wait=self.ack_wait,
            max_ack_pending=max(self.batch * 4, 256),
        )
        if len(subjects) == 1:
            config.filter_subject = subjects[0]
        else:
            config.filter_subjects = subjects
        return config

    async def _consumer(self, stream: str, subjects: list[str]) -> Any:
        js = self.bus.js
        try:
            info = await js.consumer_info(stream, self.name)
        except NotFoundError:
            await js.add_consumer(stream, self._config(subjects))
        else:
            existing = sorted(
                info.config.filter_subjects
                or ([info.config.filter_subject] if info.config.filter_subject else [])
            )
            if existing != sorted(subjects):
                raise ConsumerFilterMismatchError(self.name, existing, sorted(subjects))
        return await js.pull_subscribe_bind(self.name, stream)

    async def start(self) -> None:
        await self.bus._io().call(self._start())

    async def _start(self) -> None:
        if self._stop_requested:
            return
        await ensure_side_streams(self.bus)
        main = await self._consumer(self.bus.stream, self.subjects)
        retry = await self._consumer(retry_stream(self.bus), [_retry_subject(self.bus, self.name)])
        self._task = asyncio.ensure_future(self._work(main, retry))

    async def stop(self) -> None:
        """Stop fetching; the message in hand is finished first."""
        self._stop_requested = True
        io = self.bus.io
        if io is not None:
            await io.call(self._stop())

    async def _stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 30)

    async def __aenter__(self) -> GroupSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _work(self, main: Any, retry: Any) -> None:
        while not self._stopped.is_set():
            got = 0
            for sub, wait in ((retry, 0.05), (main, 0.5)):
                try:
                    messages = await sub.fetch(self.batch, timeout=wait)
                except (TimeoutError, NatsTimeoutError):
                    continue
                except Exception as exc:  # a lost connection, a leader election: try again
                    if self._stopped.is_set():
                        return
                    log.info("consumer %s: fetch failed (%r); retrying", self.name, exc)
                    await asyncio.sleep(0.2)
                    continue
                got += len(messages)
                for msg in messages:
                    await self._one(msg)
            if not got:
                await asyncio.sleep(0)

    async def _one(self, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered
        try:
            event = decode_event(msg.data or b"")
        except (DecodeError, ValueError):
            log.warning("consumer %s: %s is not an event envelope: terminated", self.name, msg)
            await msg.term()
            return
        try:
            if self._is_async:
                await self.handler(event)  # type: ignore[misc]
            else:  # a plain handler runs off the I/O loop, which keeps serving meanwhile
                result = await asyncio.to_thread(self.handler, event)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            self.failed += 1
            if deliveries >= self.max_deliver:
                await self._dead_letter(msg, event, deliveries, exc)
                await msg.term()
                self.dead_lettered += 1
            else:
                delay = self.backoff[deliveries - 1] if deliveries - 1 < len(self.backoff) else None
                await msg.nak(delay=delay)
            return
        await msg.ack()
        self.handled += 1

    async def _dead_letter(self, msg: Msg, event: Event, deliveries: int, exc: Exception) -> None:
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
        await self.bus.js.publish(
            _dead_letter_subject(self.bus, self.name),
            msg.data or b"",
            headers={
                MSG_ID: f"{self.name}:{event.event_id}",
                CONSUMER: self.name,
                DELIVERIES: str(deliveries),
                ERROR_TYPE: type(exc).__name__,
                ERROR: text,
            },
        )
        log.warning(
            "consumer %s: event %s (position %d) dead-lettered after %d deliveries: %s\n%s",
            self.name,
            event.event_id,
            event.position,
            deliveries,
            text,
            "".join(traceback.format_exception(exc)),
        )


async def _all_messages(bus: NatsEventBus, stream: str) -> list[Any]:
    try:
        info = await bus.js.stream_info(stream)
    except NotFoundError:
        return []
    out: list[Any] = []
    if not info.state.messages:
        return out
    for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            out.append(await bus.js.get_msg(stream, seq, direct=True))
    return out


async def read_dead_letters(bus: NatsEventBus, name: str) -> list[DeadLetterEntry]:
    """The group's dead letters, then any max-deliveries advisory not dead-lettered (backstop)."""
    entries: list[DeadLetterEntry] = []
    seen: set[str] = set()
    subject = _dead_letter_subject(bus, name)
    for raw in await _all_messages(bus, dead_letter_stream(bus)):
        if raw.subject != subject:
            continue
        headers = raw.headers or {}
        try:
            event = decode_event(raw.data or b"")
        except (DecodeError, ValueError):
            continue
        seen.add(event.event_id)
        entries.append(
            _entry(
                name,
                event,
                int(headers.get(DELIVERIES, "0")),
                headers.get(ERROR_TYPE, ""),
                headers.get(ERROR, ""),
                raw.time if isinstance(raw.time, datetime) else None,
            )
        )
    for raw in await _all_messages(bus, advisory_stream(bus)):
        try:
            advisory = json.loads(raw.data or b"{}")
        except ValueError:
            continue
        if advisory.get("consumer") != name:
            continue
        with contextlib.suppress(NotFoundError, DecodeError, ValueError):
            original = await bus.js.get_msg(advisory["stream"], int(advisory["stream_seq"]))
            event = decode_event(original.data or b"")
            if event.event_id in seen:
                continue
            seen.add(event.event_id)
            entries.append(
                _entry(
                    name,
                    event,
                    int(advisory.get("deliveries", 0)),
                    "MaxDeliveries",
                    "the server gave up after max deliveries (the worker did not dead-letter it)",
                    None,
                )
            )
    return entries


def _entry(
    name: str,
    event: Event,
    deliveries: int,
    error_type: str,
    message: str,
    at: datetime | None,
) -> DeadLetterEntry:
    return DeadLetterEntry(
        projection=name,
        position=event.position,
        event_id=event.event_id,
        event_type=event.event_type,
        aggregate_id=event.aggregate_id,
        error_type=error_type,
        message=message,
        failed_at=at or datetime.now(UTC),
        deliveries=deliveries,
        consumer=name,
        event=event,
    )


async def redeliver(bus: NatsEventBus, name: str, event_id: str) -> None:
    """Publish dead letter ``event_id`` of group ``name`` to the group's retry subject."""
    for entry in await read_dead_letters(bus, name):
        if entry.event_id == event_id and entry.event is not None:
            from .envelope import encode_event

            await bus.js.publish(
                _retry_subject(bus, name),
                encode_event(entry.event),
                headers={CONSUMER: name},
            )
            return
    raise LookupError(
        f"consumer group {name!r} has no dead letter for event {event_id!r}; "
        f"see await bus.dead_letters({name!r}) for the ones it has"
    )


async def delete_consumer(bus: NatsEventBus, name: str) -> None:
    for stream in (bus.stream, retry_stream(bus)):
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(stream, name)
