"""Checks of the arguments of the public entry points (repository, aggregate, store).

A wrong type or value fails at the call, naming the argument and what it
accepts, instead of surfacing deep inside as an ``AttributeError`` or a
misleading answer ("versions run from 1 to 1" for ``at_version=1.5``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import IntegerRangeError
from .events import EventMetadata, NewEvent, encode_constraints
from .snapshots import Snapshot

#: The largest integer SQLite and PostgreSQL's ``bigint`` hold: versions, positions and
#: times in microseconds stay at or below it.
MAX_INTEGER = 2**63 - 1


def _shown(value: object) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def check_command_id(where: str, command_id: object, *, optional: bool = False) -> None:
    """``command_id`` must be a non-empty ``str`` (or None when ``optional``)."""
    if command_id is None and optional:
        return
    if not isinstance(command_id, str):
        accepts = "a non-empty str or None" if optional else "a non-empty str"
        raise TypeError(
            f"{where}: command_id must be {accepts}, got {_shown(command_id)}. Pass the id "
            "the client sent (new_command_id() makes one)."
        )
    if not command_id:
        way_out = ", or leave command_id out to save without one" if optional else ""
        raise ValueError(
            f"{where} needs a non-empty command id, got ''. Pass the id the client sent "
            f"(new_command_id() makes one){way_out}."
        )
    if not command_id.isascii():
        check_encodable(where, "command_id", command_id)


def check_key(where: str, name: str, value: object) -> None:
    """An id or name a read looks up (``aggregate_id``, a constraint's ``index`` and
    ``value``, a ``command_id``, a checkpoint's name) must be a ``str``: the stores hold
    them as text, so anything else can match nothing (and PostgreSQL refuses to compare
    text with it)."""
    if not isinstance(value, str):
        raise TypeError(
            f"{where}: {name} must be a str, got {_shown(value)}. Ids and names are text: "
            f"pass str({value!r:.40}) if that is the one meant."
        )


def lone_surrogate(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (it holds a lone surrogate), or None when it
    can. sqlite3 and psycopg refuse such text with a bare ``UnicodeEncodeError`` that
    names no argument."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"it holds a lone surrogate (U+{ord(text[exc.start]):04X}) at index {exc.start}, "
            "which is not valid Unicode text and cannot be stored as UTF-8 (such strings "
            "come from decoding bytes with errors='surrogateescape', or from half of a "
            "UTF-16 pair)"
        )
    return None


def check_encodable(where: str, name: str, text: str) -> None:
    """``text`` (an id or a name) must be storable as UTF-8: no lone surrogate, as
    ``UniqueConstraint`` checks its index and value."""
    problem = lone_surrogate(text)
    if problem is not None:
        raise ValueError(
            f"{where}: {name} {text[:80]!r} cannot be stored: {problem}. Decode the bytes "
            "it came from as UTF-8 (errors='strict' or 'replace') first."
        )


def check_lookup_id(where: str, name: str, value: object) -> None:
    """An id or name a read looks up: a ``str`` (``check_key``) storable as UTF-8."""
    check_key(where, name, value)
    check_encodable(where, name, value)  # type: ignore[arg-type]


def check_stream_read(
    where: str, aggregate_id: object, after_version: object, up_to_version: object = None
) -> None:
    """The arguments of ``load_stream`` (and ``load_stream_payloads``): the aggregate id a
    ``str``, ``after_version`` an int >= 0, ``up_to_version`` None or an int >= 0.

    On the load path: the usual case (an ASCII ``str``, ints >= 0) is tested first, in
    one expression; only what fails it goes through the checks that name the problem.
    """
    if (
        type(aggregate_id) is str
        and aggregate_id.isascii()
        and type(after_version) is int
        and after_version >= 0
        and (up_to_version is None or (type(up_to_version) is int and up_to_version >= 0))
    ):
        return
    check_lookup_id(where, "aggregate_id", aggregate_id)
    for name, value, accepts in (
        ("after_version", after_version, "an int >= 0 (0 reads from the first event)"),
        ("up_to_version", up_to_version, "an int >= 0, or None for the last version"),
    ):
        if value is None and name == "up_to_version":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: {name} must be {accepts}, got {_shown(value)}")
        if value < 0:
            raise ValueError(f"{where}: {name} must be {accepts}, got {value}")


def check_checkpoint_name(where: str, name: object) -> None:
    """A checkpoint's (a projection's) name: a non-empty ``str`` storable as UTF-8."""
    if not isinstance(name, str):
        raise TypeError(
            f"{where}: the checkpoint name must be a non-empty str (the projection's name), "
            f"got {_shown(name)}"
        )
    if not name:
        raise ValueError(
            f"{where} needs a non-empty checkpoint name (the projection's name), got ''"
        )
    check_encodable(where, "the checkpoint name", name)


def check_moment(where: str, name: str, value: object) -> None:
    """A point in time: a ``datetime`` with a time zone (``datetime.now(UTC)``)."""
    if not isinstance(value, datetime):
        raise TypeError(
            f"{where}: {name} must be a datetime with a time zone (e.g. datetime.now(UTC)) "
            f"or None for now, got {_shown(value)}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{where}: {name} {value!r} has no time zone; pass an aware datetime "
            "(e.g. datetime.now(UTC))"
        )


def check_metadata(where: str, metadata: object, name: str = "metadata") -> None:
    """``metadata`` must be an ``EventMetadata`` or None."""
    if metadata is not None and not isinstance(metadata, EventMetadata):
        raise TypeError(
            f"{where}: {name} must be an EventMetadata or None, got {_shown(metadata)}. Build "
            "one with EventMetadata(correlation_id=..., principal_id=..., custom={...})."
        )


def check_ttl(where: str, command_ttl: object) -> None:
    """``command_ttl`` must be a ``timedelta`` of 0 or more (``timedelta.max``: kept for good)."""
    if not isinstance(command_ttl, timedelta):
        raise TypeError(
            f"{where}: command_ttl must be a datetime.timedelta, got {_shown(command_ttl)}. "
            "Pass e.g. timedelta(days=7) (the default, DEFAULT_COMMAND_TTL)."
        )
    if command_ttl.days < 0:  # negative (a timedelta keeps its sign in days)
        raise ValueError(
            f"{where}: command_ttl must be 0 or more (how long the command's record is kept "
            f"to recognise a retry), got {command_ttl!r}. Pass e.g. timedelta(days=7) (the "
            "default, DEFAULT_COMMAND_TTL); timedelta.max keeps the record for good."
        )


# The last microsecond a datetime holds (9999-12-31), counted from the Unix epoch.
_LAST_MICROS = (datetime.max.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
    microseconds=1
)


def command_expiry(now_micros: int, command_ttl: timedelta) -> int:
    """When a command recorded at ``now_micros`` expires, in microseconds since the epoch.

    A TTL that reaches past the year 9999 (``timedelta.max``) ends there: the record
    is kept for good, and its expiry still reads back as a ``datetime``.
    """
    return min(now_micros + command_ttl // timedelta(microseconds=1), _LAST_MICROS)


def check_append(
    path: str,
    aggregate_id: object,
    aggregate_type: object,
    expected_version: object,
    events: object,
    command_id: object,
    command_ttl: object,
) -> None:
    """The arguments of ``EventStore.append``, checked before any SQL runs (``path``
    names the store in ``IntegerRangeError``)."""
    if not isinstance(aggregate_id, str) or not aggregate_id:
        raise TypeError(f"append: aggregate_id must be a non-empty str, got {_shown(aggregate_id)}")
    if not aggregate_id.isascii():
        check_encodable("append", "aggregate_id", aggregate_id)
    where = f"append to {aggregate_id!r}"
    if not isinstance(aggregate_type, str) or not aggregate_type:
        raise TypeError(
            f"{where}: aggregate_type must be a non-empty str (the aggregate's type name, "
            f"as in AggregateRoot.type), got {_shown(aggregate_type)}"
        )
    if not aggregate_type.isascii():
        check_encodable(where, "aggregate_type", aggregate_type)
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError(
            f"{where}: expected_version must be an int (0 for a new "
            f"aggregate), got {_shown(expected_version)}"
        )
    if expected_version < 0:
        raise ValueError(f"expected_version must be >= 0, got {expected_version}")
    check_command_id(where, command_id, optional=True)
    check_ttl(where, command_ttl)
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise TypeError(f"{where}: events must be a sequence of NewEvent, got {_shown(events)}")
    if expected_version + len(events) > MAX_INTEGER:
        raise IntegerRangeError(path, "expected_version", expected_version, len(events))
    for index, event in enumerate(events):
        if not isinstance(event, NewEvent):
            raise TypeError(f"{where}: events[{index}] must be a NewEvent, got {_shown(event)}")
        _check_event(where, index, event)
    if len(events) > 1:
        _check_distinct_ids(where, [e.event_id for e in events])


def checked_append(
    path: str,
    aggregate_id: str,
    aggregate_type: str,
    expected_version: int,
    events: Sequence[NewEvent],
    command_id: str | None,
    command_ttl: timedelta,
) -> tuple[Any, ...]:
    """An append's arguments checked (``check_append``), with each event's metadata and
    constraints encoded as the adapters store them: ``(aggregate_id, aggregate_type,
    expected_version, events, encoded, command_id, command_ttl)``."""
    check_append(
        path, aggregate_id, aggregate_type, expected_version, events, command_id, command_ttl
    )
    encoded = [(e.metadata.to_json(), encode_constraints(e.constraints)) for e in events]
    return (
        aggregate_id,
        aggregate_type,
        expected_version,
        list(events),
        encoded,
        command_id,
        command_ttl,
    )


def _check_event(where: str, index: int, event: NewEvent) -> None:
    if not isinstance(event.event_id, str) or not event.event_id:
        raise TypeError(
            f"{where}: events[{index}].event_id must be a non-empty str, got "
            f"{_shown(event.event_id)}. Use new_event_id(), or deterministic_event_id() "
            "for a command's events."
        )
    if not isinstance(event.event_type, str) or not event.event_type:
        raise TypeError(
            f"{where}: events[{index}].event_type must be a non-empty str (the message's "
            f"full name, e.g. 'bank.v1.Deposited'), got {_shown(event.event_type)}"
        )
    if not (event.event_id.isascii() and event.event_type.isascii()):
        check_encodable(where, f"events[{index}].event_id", event.event_id)
        check_encodable(where, f"events[{index}].event_type", event.event_type)
    if not isinstance(event.data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"{where}: events[{index}].data must be bytes (e.g. message.SerializeToString()), "
            f"got {_shown(event.data)}"
        )
    check_metadata(where, event.metadata, f"events[{index}].metadata")


def _check_distinct_ids(where: str, ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(
            f"{where}: event id(s) {twice} appear more than once in this call; give each "
            "event its own id (new_event_id(), or deterministic_event_id() with its index)"
        )


def check_distinct_event_ids(where: str, appends: Iterable[Sequence[NewEvent]]) -> None:
    """No event id twice across the streams of one ``append_many``."""
    _check_distinct_ids(where, [e.event_id for events in appends for e in events])


def check_position(name: str, value: object) -> None:
    """A position to read after (``after_position``, a checkpoint's): an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be an int (0 reads from the start), got {_shown(value)}. Pass a "
            "position the store handed out (Event.position, head_position())."
        )
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 reads from the start), got {value}")


def check_count(name: str, value: object) -> None:
    """A page size or limit: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {_shown(value)}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_event_type_list(where: str, event_types: object, accepts: str) -> None:
    """``event_types`` must be a collection, not one ``str``: iterated, a str filters on
    its letters and matches nothing (or, with one-letter names, the wrong events)."""
    if isinstance(event_types, (str, bytes)) or not isinstance(event_types, Iterable):
        raise TypeError(
            f"{where}event_types must be a list of {accepts}, got {_shown(event_types)}. "
            f"For one type pass a list of one: event_types=[{event_types!r:.60}]."
        )


def event_type_names(event_types: object) -> list[str] | None:
    """``event_types`` of a read as a list of names (None: every type), read once."""
    if event_types is None:
        return None
    check_event_type_list("", event_types, "event type names")
    names = list(event_types)  # type: ignore[call-overload]
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"event_types must hold event type names (str, e.g. 'bank.v1.Deposited'), "
                f"got {_shown(name)} among them"
            )
    return names


def check_checkpoint(path: str, name: str, position: object, scanned: object) -> None:
    """A checkpoint's name (``check_checkpoint_name``) and ``position`` (and
    ``scanned_position``): ints from 0 to 2**63 - 1."""
    check_checkpoint_name("save_checkpoint", name)
    for label, value in (("position", position), ("scanned_position", scanned)):
        if value is None and label == "scanned_position":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"checkpoint {name!r}: {label} must be an int (the position of the last "
                f"event handled), got {_shown(value)}"
            )
        if value < 0:
            raise ValueError(f"checkpoint {name!r}: {label} must be >= 0, got {value}")
        if value > MAX_INTEGER:
            raise IntegerRangeError(path, label, value)


# -- snapshots ---------------------------------------------------------------------------
_MIN_INTEGER = -(2**63)


def check_snapshot(path: str, snapshot: object) -> None:
    """A snapshot to save: a ``Snapshot`` with text ids, bytes of state and a version from
    1 to 2**63 - 1 (``path`` names the store in ``IntegerRangeError``).

    Version 0 is refused: it is the aggregate before its first event, the state its
    factory makes, so there is nothing to snapshot; stored, it would make a load of an
    aggregate that has no events return one.
    """
    if not isinstance(snapshot, Snapshot):
        raise TypeError(
            f"save_snapshot: snapshot must be a Snapshot, got {_shown(snapshot)}. "
            "Repository.save_snapshot(aggregate) builds and saves one."
        )
    aggregate_id = snapshot.aggregate_id
    if not isinstance(aggregate_id, str) or not aggregate_id:
        raise TypeError(
            f"save_snapshot: aggregate_id must be a non-empty str, got {_shown(aggregate_id)}"
        )
    where = f"save_snapshot of {aggregate_id!r}"
    for label, value in (
        ("aggregate_type", snapshot.aggregate_type),
        ("schema_key", snapshot.schema_key),
    ):
        if not isinstance(value, str):
            raise TypeError(f"{where}: {label} must be a str, got {_shown(value)}")
    if not isinstance(snapshot.data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"{where}: data must be bytes (the aggregate's snapshot_state()), got "
            f"{_shown(snapshot.data)}"
        )
    version = snapshot.version
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(
            f"{where}: version must be an int (the aggregate version the state is at), "
            f"got {_shown(version)}"
        )
    if version < 1:
        raise ValueError(
            f"{where}: version must be >= 1, got {version}. A snapshot holds the state after "
            "an aggregate's events, and below version 1 there are none: save the aggregate's "
            "first events, then snapshot it."
        )
    if version > MAX_INTEGER:
        raise IntegerRangeError(path, "version", version)


def snapshot_version_bound(where: str, name: str, version: object) -> int | None:
    """A bound on snapshot versions (``latest_snapshot``'s ``at_or_before_version``): an
    int or None, clamped to the integers the stores hold: beyond them means no bound."""
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(
            f"{where}: {name} must be an int (a version) or None, got {_shown(version)}"
        )
    return max(_MIN_INTEGER, min(version, MAX_INTEGER))


def last_version_older_than(where: str, version: object) -> int:
    """The highest snapshot version ``delete_snapshots_older_than(id, version)`` deletes
    (delete those ``<=`` it): ``version - 1`` within the integers the stores hold.

    A ``version`` of 2**63 or more is no bound (every snapshot is older); one at or below
    1 deletes none, a negative one included (``aggregate.version - 100`` of a young
    aggregate keeps everything).
    """
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(
            f"{where}: version must be an int (snapshots below it are deleted), got "
            f"{_shown(version)}"
        )
    return max(_MIN_INTEGER, min(version - 1, MAX_INTEGER))


def snapshots_to_keep(where: str, count: object) -> int:
    """``keep_last_snapshots``' ``count``: an int >= 0 (0 deletes them all); one beyond
    the integers the stores hold keeps them all."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(
            f"{where}: count must be an int >= 0 (the number of newest snapshots to keep), "
            f"got {_shown(count)}"
        )
    if count < 0:
        raise ValueError(
            f"{where} needs count >= 0 (the number of newest snapshots to keep; 0 deletes "
            f"them all), got {count}"
        )
    return min(count, MAX_INTEGER)
