"""Consumer groups on the bus: a durable pull consumer shared by every worker of a name.

Each worker fetches from the group's consumer on the events stream and from
its consumer on the retry stream (where ``bus.redeliver`` sends a dead letter
back, never into the events stream), with explicit acks. A handler that raises
(anything but ``KeyboardInterrupt``: ``SystemExit`` too) means "not handled":
the message is naked with the next ``backoff`` delay. The server's max
deliveries is one more than ``max_deliver``, so a worker that gets the last
allowed delivery and fails is still holding the message when it publishes the
dead letter (``Nats-Msg-Id`` = ``<consumer>:<event id>``, so a repeat is a
duplicate) and only then terminates it: no crash window loses it. A worker
killed meanwhile leaves the message to one more delivery, and after that the
server's max-deliveries advisory, captured in a stream, is the backstop
``dead_letters`` reads too. The side streams and their names: ``side_streams.py``.

A worker outlives its own failures: an ack, nak, term or dead-letter publish
that fails (the server away, a permission missing) is logged and the server
delivers the message again after ``ack_wait``. A message that is not an event of
the bus's stream (its subject is not the one its envelope gives, or its
position header differs) is terminated unhandled and counted in ``refused``.
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
from .envelope import MSG_ID, POSITION, decode_event, subject_for
from .errors import ConsumerConfigMismatchError, ConsumerFilterMismatchError, RedeliveryConfigError
from .side_streams import (
    CONSUMER,
    DELIVERIES,
    ERROR,
    ERROR_TYPE,
    GAVE_UP,
    advisory_stream,
    check_no_old_side_streams,
    dead_letter_stream,
    ensure_side_streams,
    retry_stream,
)
from .side_streams import dead_letter_subject as _dead_letter_subject
from .side_streams import retry_subject as _retry_subject

if TYPE_CHECKING:
    from .bus import NatsEventBus

log = logging.getLogger("eventstore.nats.consumers")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
Handler = Callable[[Event], Awaitable[None] | None]
#: Seconds a worker waits after a failure of its own (not a handler's) before going on.
_PAUSE = 0.2


@dataclass(frozen=True)
class DeadLetterEntry(ProjectionFailure):
    """The core's ``DeadLetter`` of a consumer group: also how often it was delivered, by
    which consumer, and the event itself (``event``)."""

    deliveries: int = 0
    consumer: str = ""
    event: Event | None = None


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
        #: Messages terminated unhandled: not an event of this bus's stream.
        self.refused = 0
        self._stopped = asyncio.Event()
        self._stop_requested = False
        self._interrupted = False  # a handler raised KeyboardInterrupt: stop at once
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

    def _differences(self, config: api.ConsumerConfig) -> dict[str, tuple[object, object]]:
        """The settings of an existing consumer that differ from this worker's."""
        differences: dict[str, tuple[object, object]] = {}
        existing_deliver = int(config.max_deliver or 0) - 1  # the server's is one more
        if existing_deliver != self.max_deliver:
            differences["max_deliver"] = (existing_deliver, self.max_deliver)
        existing_wait = float(config.ack_wait or 0)
        if abs(existing_wait - self.ack_wait) > 1e-6:
            differences["ack_wait"] = (existing_wait, self.ack_wait)
        return differences

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
            differences = self._differences(info.config)
            if existing != sorted(subjects):
                raise ConsumerFilterMismatchError(
                    self.name, existing, sorted(subjects), differences, stream
                )
            if differences:
                raise ConsumerConfigMismatchError(self.name, differences, stream)
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
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[None]) -> None:
        """A worker never ends without a word: say why when it was not asked to stop."""
        name = self.name
        if task.cancelled():  # the bus closed under it (or someone cancelled it)
            if not self._stopped.is_set():
                log.info("consumer %s: the worker was cancelled; it handles no more events", name)
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "consumer %s: the worker stopped on %s; it handles no more events (start "
                "another with bus.subscribe)",
                self.name,
                type(exc).__name__,
                exc_info=exc,
            )
        elif not self._stopped.is_set():
            log.error("consumer %s: the worker stopped; it handles no more events", self.name)

    @property
    def is_running(self) -> bool:
        """True while the worker fetches and handles events."""
        return self._task is not None and not self._task.done()

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
            for sub, wait, is_retry in ((retry, 0.05, True), (main, 0.5, False)):
                try:
                    messages = await sub.fetch(self.batch, timeout=wait)
                except (TimeoutError, NatsTimeoutError):
                    continue
                except Exception as exc:  # a lost connection, a leader election: try again
                    if self._stopped.is_set():
                        return
                    log.info("consumer %s: fetch failed (%r); retrying", self.name, exc)
                    await asyncio.sleep(_PAUSE)
                    continue
                got += len(messages)
                for index, msg in enumerate(messages):
                    if self._interrupted:  # the worker stops now: hand the rest back
                        await self._hand_back(messages[index:])
                        break
                    try:
                        await self._one(msg, is_retry)
                    except Exception:  # never end the worker: the server delivers it again
                        log.exception(
                            "consumer %s: handling the message on %s failed; it is delivered "
                            "again after ack_wait (%g s)",
                            self.name,
                            msg.subject,
                            self.ack_wait,
                        )
                        await asyncio.sleep(_PAUSE)
            if not got:
                await asyncio.sleep(0)

    async def _hand_back(self, messages: list[Msg]) -> None:
        """Nak fetched messages this worker will not handle, so the group gets them now
        rather than after ``ack_wait`` (a failed nak only delays them until then)."""
        for msg in messages:
            with contextlib.suppress(Exception):
                await msg.nak()

    def _is_ours(self, msg: Msg, event: Event, is_retry: bool) -> bool:
        """False for a message that is not an event of this bus's stream (or this group's
        retry subject): whatever captured it, it must never reach the handler."""
        headers = msg.headers or {}
        if is_retry:
            return msg.subject == _retry_subject(self.bus, self.name) and (
                headers.get(CONSUMER) == self.name
            )
        expected = subject_for(
            self.bus.subject_prefix, event.aggregate_type, event.event_type, event.aggregate_id
        )
        return msg.subject == expected and headers.get(POSITION) == str(event.position)

    async def _settle(self, what: str, msg: Msg, event: Event | None, action: Any) -> None:
        """Run an ack, nak, term or dead-letter publish; a failure (the server away, a
        permission missing) is logged, and the server delivers the message again."""
        try:
            await action
        except Exception as exc:
            log.warning(
                "consumer %s: %s of event %s (position %s) failed (%s: %s); the server delivers "
                "it again after ack_wait (%g s)",
                self.name,
                what,
                event.event_id if event is not None else "?",
                event.position if event is not None else "?",
                type(exc).__name__,
                exc,
                self.ack_wait,
            )
            raise _Unsettled from exc

    async def _one(self, msg: Msg, is_retry: bool = False) -> None:
        deliveries = msg.metadata.num_delivered
        try:
            event = decode_event(msg.data or b"")
        except (DecodeError, ValueError):
            log.warning("consumer %s: %s is not an event envelope: terminated", self.name, msg)
            with contextlib.suppress(_Unsettled):
                await self._settle("terminating", msg, None, msg.term())
            return
        if not self._is_ours(msg, event, is_retry):
            self.refused += 1
            log.warning(
                "consumer %s: the message on %s (event %s, position %d) is not an event of "
                "stream %s (subjects %s.>): terminated, not handled",
                self.name,
                msg.subject,
                event.event_id,
                event.position,
                self.bus.stream,
                self.bus.subject_prefix,
            )
            with contextlib.suppress(_Unsettled):
                await self._settle("terminating", msg, event, msg.term())
            return
        failure: BaseException | None = None
        try:
            if self._is_async:
                await self.handler(event)  # type: ignore[misc]
            else:  # a plain handler runs off the I/O loop, which keeps serving meanwhile
                result = await asyncio.to_thread(self.handler, event)
                if inspect.isawaitable(result):
                    await result
        except KeyboardInterrupt:
            # Not a verdict on the event: hand it back at once and stop this worker.
            log.error(
                "consumer %s: the handler raised KeyboardInterrupt on event %s (position %d); "
                "this worker stops, the event goes back to the group",
                self.name,
                event.event_id,
                event.position,
            )
            self._interrupted = True
            self._stopped.set()
            with contextlib.suppress(_Unsettled):
                await self._settle("handing back", msg, event, msg.nak())
            return
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this worker is being cancelled
            failure = exc  # raised by the handler itself: a failure like any other
        except BaseException as exc:  # SystemExit too: a failure of this event, not the bus's
            failure = exc
        if failure is None:
            with contextlib.suppress(_Unsettled):
                await self._settle("acknowledging", msg, event, msg.ack())
                self.handled += 1
            return
        self.failed += 1
        with contextlib.suppress(_Unsettled):
            if deliveries >= self.max_deliver:
                await self._settle(
                    "dead-lettering", msg, event, self._dead_letter(msg, event, deliveries, failure)
                )
                await self._settle("terminating", msg, event, msg.term())
                self.dead_lettered += 1
            else:
                delay = self.backoff[deliveries - 1] if deliveries - 1 < len(self.backoff) else None
                await self._settle("naking", msg, event, msg.nak(delay=delay))

    async def _dead_letter(
        self, msg: Msg, event: Event, deliveries: int, exc: BaseException
    ) -> None:
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


class _Unsettled(Exception):
    """An ack, nak, term or dead-letter publish failed (already logged)."""


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
    await check_no_old_side_streams(bus)
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
                    GAVE_UP,
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
