"""The streams beside a bus's event stream that its consumer groups use, and their names.

- ``<stream>~RETRY``, subjects ``<prefix>~retry.<group>``: dead letters sent back
  by ``bus.redeliver`` (never into the event stream);
- ``<stream>~DLQ``, subjects ``<prefix>~dlq.<group>``: the dead letters;
- ``<stream>~ADVISORIES``: the server's max-deliveries advisories of the groups'
  consumers (the backstop when a worker dies before it dead-letters an event).

``~`` is the separator because no bus's own stream or subject prefix may hold it
(``NatsEventBus`` refuses them), and tenant ids (``[a-z0-9_-]``) never do: no
tenant's stream or subjects can be another bus's side stream. Before 2026-12-02
they were ``<stream>_RETRY``/``_DLQ``/``_ADVISORIES`` with subjects
``<prefix>_retry.>``/``<prefix>_dlq.>``: exactly the stream and subjects of a tenant
named ``<tenant>_retry`` or ``<tenant>_dlq`` under the per-tenant recipe, so one
tenant's dead letters landed in another's event stream. A bus that finds its
messages in streams of the old layout refuses to go on (``OldSideStreamsError``)
until ``move_old_side_streams`` has moved them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from .envelope import MSG_ID, decode_event
from .errors import OldSideStreamsError, SideStreamConflictError

if TYPE_CHECKING:
    from .bus import NatsEventBus

log = logging.getLogger("eventstore.nats.consumers")

#: Joins a bus's stream name or subject prefix to a side stream's suffix.
SEPARATOR = "~"
CONSUMER = "Eventstore-Consumer"
DELIVERIES = "Eventstore-Deliveries"
ERROR_TYPE = "Eventstore-Error-Type"
ERROR = "Eventstore-Error"
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
#: The error text of a dead letter made from a max-deliveries advisory.
GAVE_UP = "the server gave up after max deliveries (the worker did not dead-letter it)"


def retry_stream(bus: NatsEventBus) -> str:
    return f"{bus.stream}{SEPARATOR}RETRY"


def dead_letter_stream(bus: NatsEventBus) -> str:
    return f"{bus.stream}{SEPARATOR}DLQ"


def advisory_stream(bus: NatsEventBus) -> str:
    return f"{bus.stream}{SEPARATOR}ADVISORIES"


def retry_subject(bus: NatsEventBus, name: str) -> str:
    return f"{bus.subject_prefix}{SEPARATOR}retry.{name}"


def dead_letter_subject(bus: NatsEventBus, name: str) -> str:
    return f"{bus.subject_prefix}{SEPARATOR}dlq.{name}"


def _retry_subjects(bus: NatsEventBus) -> list[str]:
    return [f"{bus.subject_prefix}{SEPARATOR}retry.>"]


def _dead_letter_subjects(bus: NatsEventBus) -> list[str]:
    return [f"{bus.subject_prefix}{SEPARATOR}dlq.>"]


def _advisory_subjects(bus: NatsEventBus, retry: str) -> list[str]:
    return [f"{MAX_DELIVERIES_ADVISORY}.{bus.stream}.*", f"{MAX_DELIVERIES_ADVISORY}.{retry}.*"]


async def _ensure_stream(bus: NatsEventBus, name: str, subjects: list[str], role: str) -> None:
    """Create side stream ``name``, or check an existing one captures ``subjects``."""
    try:
        info = await bus.js.stream_info(name)
    except NotFoundError:
        try:
            await bus.js.add_stream(
                api.StreamConfig(
                    name=name,
                    subjects=subjects,
                    storage=api.StorageType.FILE,
                    num_replicas=bus.replicas,
                    allow_direct=True,
                )
            )
        except BadRequestError as exc:
            if "overlap" not in str(exc.description or "").lower():
                raise
            raise SideStreamConflictError(
                name, subjects, [f"(another stream already captures them: {exc.description})"], role
            ) from exc
        return
    actual = sorted(info.config.subjects or [])
    if actual != sorted(subjects):
        raise SideStreamConflictError(name, sorted(subjects), actual, role)


async def ensure_side_streams(bus: NatsEventBus) -> None:
    """The retry, dead-letter and advisory streams next to the events stream, made when
    missing; refused when a stream of that name captures other subjects, or when the
    groups' messages are still in streams of the layout before 2026-12-02."""
    await check_no_old_side_streams(bus)
    await _ensure_stream(bus, retry_stream(bus), _retry_subjects(bus), "retry")
    await _ensure_stream(bus, dead_letter_stream(bus), _dead_letter_subjects(bus), "dead-letter")
    await _ensure_stream(
        bus, advisory_stream(bus), _advisory_subjects(bus, retry_stream(bus)), "advisory"
    )


# -- the layout before 2026-12-02 ------------------------------------------------------------
class _OldStream:
    """One side stream of the old layout: its name, its exact subjects, and the filter of
    the messages that are this bus's (``None``: every message, for the advisories)."""

    def __init__(self, name: str, subjects: list[str], mine: str | None) -> None:
        self.name = name
        self.subjects = sorted(subjects)
        self.mine = mine


def _old_streams(bus: NatsEventBus) -> tuple[_OldStream, _OldStream, _OldStream]:
    prefix, stream = bus.subject_prefix, bus.stream
    old_retry = f"{stream}_RETRY"
    return (
        _OldStream(f"{stream}_ADVISORIES", _advisory_subjects(bus, old_retry), None),
        _OldStream(f"{stream}_DLQ", [f"{prefix}_dlq.>"], f"{prefix}_dlq.*"),
        _OldStream(old_retry, [f"{prefix}_retry.>"], f"{prefix}_retry.*"),
    )


async def _old_info(bus: NatsEventBus, old: _OldStream) -> Any | None:
    """The stream info of ``old`` when it exists with exactly the old layout's subjects
    (else it is something else, a tenant's event stream, and none of this bus's business)."""
    try:
        info = await bus.js.stream_info(old.name, subjects_filter=old.mine)
    except NotFoundError:
        return None
    if sorted(info.config.subjects or []) != old.subjects:
        return None
    return info


def _mine(info: Any, old: _OldStream) -> int:
    if old.mine is None:
        return int(info.state.messages or 0)
    return sum((info.state.subjects or {}).values())


async def check_no_old_side_streams(bus: NatsEventBus) -> None:
    """Raise ``OldSideStreamsError`` when this bus's groups have messages in old-named side
    streams. An old advisory stream with nothing in it is removed (it is certainly this
    bus's, and it captures the subjects the new one needs); empty old retry and dead-letter
    streams are left alone (under the old names they may be a tenant's event stream)."""
    found: dict[str, int] = {}
    olds = _old_streams(bus)
    infos = await asyncio.gather(*(_old_info(bus, old) for old in olds))  # one round trip
    for old, info in zip(olds, infos, strict=True):
        if info is None:
            continue
        if _mine(info, old):
            found[old.name] = _mine(info, old)
        elif old.mine is None:  # the advisory stream
            with contextlib.suppress(NotFoundError):
                await bus.js.delete_stream(old.name)
            log.info("removed the empty advisory stream %s of the old layout", old.name)
    if found:
        raise OldSideStreamsError(bus.stream, found)


async def _matching(bus: NatsEventBus, stream: str, subject: str | None) -> list[Any]:
    """Every message of ``stream`` (on ``subject``, a filter, when given), oldest first."""
    out: list[Any] = []
    if subject is None:
        info = await bus.js.stream_info(stream)
        for seq in range(max(int(info.state.first_seq or 1), 1), int(info.state.last_seq or 0) + 1):
            with contextlib.suppress(NotFoundError):
                out.append(await bus.js.get_msg(stream, seq))
        return out
    seq = 1
    while True:
        try:
            raw = await bus.js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return out
        out.append(raw)
        seq = int(raw.seq or seq) + 1


async def _letters_of(bus: NatsEventBus, stream: str, subject: str) -> set[tuple[str, str]]:
    """(consumer, event id) of the dead letters in ``stream`` on ``subject``."""
    seen: set[tuple[str, str]] = set()
    with contextlib.suppress(NotFoundError):
        for raw in await _matching(bus, stream, subject):
            consumer = raw.subject.rpartition(".")[2]
            with contextlib.suppress(DecodeError, ValueError):
                seen.add((consumer, decode_event(raw.data or b"").event_id))
    return seen


async def move_old_side_streams(bus: NatsEventBus) -> dict[str, int]:
    """Move this bus's dead letters, pending retries and advisories out of the side
    streams of the layout before 2026-12-02, then remove them from there.

    - each dead letter goes to ``<stream>~DLQ`` (headers kept; one already there is
      not copied twice, so a second run after a crash is safe);
    - each max-deliveries advisory whose event has no dead letter becomes one;
    - each retry a group's old retry consumer has not acknowledged goes to
      ``<stream>~RETRY`` (an idempotent handler may see one twice), and the old
      retry consumers are deleted;
    - the old advisory stream is deleted; the old retry and dead-letter streams
      lose this bus's messages, and are deleted when nothing else is left in them
      (under the old names they may be a tenant's event stream, which is kept).

    Returns how many dead letters, advisories and retries were moved. Run it once,
    with no worker of an older release running on this stream.
    """
    moved = {"dead_letters": 0, "advisories": 0, "retries": 0}
    advisories, letters, retries = _old_streams(bus)
    new_retry, new_dlq = retry_stream(bus), dead_letter_stream(bus)
    await _ensure_stream(bus, new_retry, _retry_subjects(bus), "retry")
    await _ensure_stream(bus, new_dlq, _dead_letter_subjects(bus), "dead-letter")
    have = await _letters_of(bus, new_dlq, dead_letter_subject(bus, "*"))
    letters_info = await _old_info(bus, letters)
    old_letters: list[Any] = []
    if letters_info is not None and letters.mine is not None:
        old_letters = await _matching(bus, letters.name, letters.mine)

    # Advisories first: they point into the old retry stream, still there.
    advisory_info = await _old_info(bus, advisories)
    if advisory_info is not None:
        already = set(have)
        for raw in old_letters:
            with contextlib.suppress(DecodeError, ValueError):
                event = decode_event(raw.data or b"")
                already.add((raw.subject.rpartition(".")[2], event.event_id))
        for raw in await _matching(bus, advisories.name, None):
            try:
                advisory = json.loads(raw.data or b"{}")
                original = await bus.js.get_msg(advisory["stream"], int(advisory["stream_seq"]))
                event = decode_event(original.data or b"")
                consumer = str(advisory["consumer"])
            except (NotFoundError, DecodeError, ValueError, KeyError, TypeError):
                continue
            if (consumer, event.event_id) in already:
                continue
            already.add((consumer, event.event_id))
            await bus.js.publish(
                dead_letter_subject(bus, consumer),
                original.data or b"",
                headers={
                    MSG_ID: f"{consumer}:{event.event_id}",
                    CONSUMER: consumer,
                    DELIVERIES: str(int(advisory.get("deliveries", 0))),
                    ERROR_TYPE: "MaxDeliveries",
                    ERROR: GAVE_UP,
                },
            )
            have.add((consumer, event.event_id))
            moved["advisories"] += 1

    for raw in old_letters:
        consumer = raw.subject.rpartition(".")[2]
        try:
            event = decode_event(raw.data or b"")
        except (DecodeError, ValueError):
            continue
        if (consumer, event.event_id) in have:
            continue
        kept = {k: v for k, v in (raw.headers or {}).items() if k.startswith("Eventstore-")}
        await bus.js.publish(
            dead_letter_subject(bus, consumer),
            raw.data or b"",
            headers={**kept, MSG_ID: f"{consumer}:{event.event_id}", CONSUMER: consumer},
        )
        have.add((consumer, event.event_id))
        moved["dead_letters"] += 1

    retries_info = await _old_info(bus, retries)
    if retries_info is not None and retries.mine is not None:
        floors: dict[str, int] = {}
        prefix = retries.mine[:-1]
        for group in await bus.js.consumers_info(retries.name):
            config = group.config
            subjects = config.filter_subjects or [config.filter_subject or ""]
            if len(subjects) == 1 and subjects[0].startswith(prefix):
                acked = group.ack_floor.stream_seq if group.ack_floor is not None else 0
                floors[subjects[0][len(prefix) :]] = int(acked or 0)
        for raw in await _matching(bus, retries.name, retries.mine):
            name = raw.subject.rpartition(".")[2]
            if name not in floors or int(raw.seq) <= floors[name]:
                continue  # handled already, or its group is gone
            kept = {k: v for k, v in (raw.headers or {}).items() if k.startswith("Eventstore-")}
            await bus.js.publish(
                retry_subject(bus, name),
                raw.data or b"",
                headers={**kept, MSG_ID: f"moved:{retries.name}:{raw.seq}", CONSUMER: name},
            )
            moved["retries"] += 1
        for name in floors:
            with contextlib.suppress(NotFoundError):
                await bus.js.delete_consumer(retries.name, name)

    if advisory_info is not None:
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_stream(advisories.name)
    for old, found in ((letters, letters_info), (retries, retries_info)):
        if found is None or old.mine is None:
            continue
        with contextlib.suppress(NotFoundError):
            await bus.js.purge_stream(old.name, subject=old.mine)
            after = await bus.js.stream_info(old.name)
            if not after.state.messages and not after.state.consumer_count:
                await bus.js.delete_stream(old.name)
    await ensure_side_streams(bus)
    log.info("moved the side streams of %s to the new layout: %s", bus.stream, moved)
    return moved
