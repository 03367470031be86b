"""pandas DataFrames of events, streams, snapshots and projection checkpoints.

The columns have the dtypes a reader expects when they sort, filter or plot:
timestamps are timezone-aware datetimes (UTC), positions and versions are
64-bit integers, and payloads are dicts of the decoded message whenever its
class is known (hex of the stored bytes otherwise, with ``decoded`` False), so
one unknown event type never hides the rest of the log. The dtypes are the
same for an empty table, so code written against a full one keeps working.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from google.protobuf.message import DecodeError, Message

from ..core.aggregate import AggregateRoot
from ..core.errors import EventDecodeError
from ..core.event_types import EventTypeRegistry
from ..core.events import Event
from ..core.ports import EventStore
from ..core.repository import Repository
from ..core.snapshots import Snapshot
from .messages import message_to_dict

PayloadTypes = (
    Repository[Any]
    | EventTypeRegistry
    | Mapping[str, type[Message]]
    | Iterable[type[Message]]
    | None
)
"""Where message classes come from: a repository (its upcasters apply), a
registry or mapping by full name, a list of classes, or nothing (all raw)."""

Decoder = Callable[[Event], Message | None]

EVENT_COLUMNS = (
    "position",
    "timestamp",
    "aggregate_type",
    "aggregate_id",
    "version",
    "event_type",
    "payload",
    "decoded",
    "event_id",
    "causation_id",
    "correlation_id",
    "principal_id",
    "tenant_id",
)


BRIEF_COLUMNS = ("position", "aggregate_id", "version", "event_type", "payload")
"""What a first look at the log needs (``%es_events --brief``)."""


def payload_decoder(types: PayloadTypes) -> Decoder:
    """A function giving an event's message, or None when it cannot be decoded."""
    if isinstance(types, Repository):
        repo = types

        def by_repository(event: Event) -> Message | None:
            try:
                return repo.decode(event)
            except EventDecodeError:
                return None

        return by_repository
    if types is None:
        classes: Mapping[str, type[Message]] = {}
    elif isinstance(types, Mapping):
        classes = types
    else:
        classes = EventTypeRegistry(types)

    def by_type(event: Event) -> Message | None:
        cls = classes.get(event.event_type)
        if cls is None:
            return None
        try:
            return cls.FromString(event.data)
        except DecodeError:
            return None

    return by_type


def _timestamps(micros: Sequence[int]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(micros, dtype="int64"), unit="us", utc=True))


def _ints(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype="int64")


def _strings(values: Sequence[str]) -> pd.Series:
    return pd.Series(list(values), dtype="str")


def events_frame(
    events: Iterable[Event],
    types: PayloadTypes = None,
    *,
    expand_payload: bool = False,
    time_from: str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per event, in the order given.

    ``expand_payload`` adds one column per payload field (``payload.<field>``),
    handy when all rows are of one event type. ``time_from`` names a key of
    ``metadata.custom`` holding the time the event *happened* (an ISO 8601
    string, such as a dataset's ``recorded_at``) to use as ``timestamp``
    instead of the time the store appended it; events without that key keep
    the stored time. ``columns`` keeps only those columns, in that order.
    """
    decode = payload_decoder(types)
    rows = list(events)
    payloads: list[Any] = []
    decoded: list[bool] = []
    for event in rows:
        message = decode(event)
        if message is None:
            payloads.append(event.data.hex())
            decoded.append(False)
        else:
            payloads.append(message_to_dict(message))
            decoded.append(True)
    metadata = [e.metadata for e in rows]
    frame = pd.DataFrame(
        {
            "position": _ints([e.position for e in rows]),
            "timestamp": _timestamps([e.timestamp_micros for e in rows]),
            "aggregate_type": _strings([e.aggregate_type for e in rows]),
            "aggregate_id": _strings([e.aggregate_id for e in rows]),
            "version": _ints([e.version for e in rows]),
            "event_type": _strings([e.event_type for e in rows]),
            "payload": pd.Series(payloads, dtype="object"),
            "decoded": np.asarray(decoded, dtype="bool"),
            "event_id": _strings([e.event_id for e in rows]),
            "causation_id": _strings([m.causation_id for m in metadata]),
            "correlation_id": _strings([m.correlation_id for m in metadata]),
            "principal_id": _strings([m.principal_id for m in metadata]),
            "tenant_id": _strings([m.tenant_id for m in metadata]),
        },
        columns=list(EVENT_COLUMNS),
    )
    if time_from is not None:
        frame["timestamp"] = _custom_times(rows, time_from, frame["timestamp"])
    if expand_payload:
        frame = expand_payloads(frame)
    if columns is not None:
        frame = _only_columns(frame, columns)
    return frame


def _custom_times(rows: Sequence[Event], key: str, stored: pd.Series) -> pd.Series:
    texts = [e.metadata.custom.get(key) for e in rows]
    if not any(texts):
        return stored
    parsed = pd.to_datetime(
        pd.Series([t or None for t in texts], dtype="object"), utc=True, format="ISO8601"
    ).dt.as_unit("us")
    return parsed.where(parsed.notna(), stored)


def _only_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"no column {', '.join(map(repr, missing))} in the events frame; "
            f"its columns are {', '.join(frame.columns)}"
        )
    return frame[list(columns)]


def expand_payloads(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each decoded payload field as a ``payload.<field>`` column.

    A field missing from other event types leaves gaps; integer fields stay
    integers (gaps as ``<NA>``) instead of turning into floats: ``Int64``, or
    ``UInt64`` when a value is above 2**63 - 1 and none is negative (a
    ``uint64`` or ``fixed64`` field), else Python ints in an ``object`` column.
    """
    dicts = [p if isinstance(p, dict) else {} for p in frame["payload"]]
    names = list(dict.fromkeys(k for d in dicts for k in d))
    columns: dict[str, pd.Series] = {}
    for name in names:
        values = [d.get(name) for d in dicts]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            series = pd.Series(values, dtype=_integer_dtype(present), index=frame.index)
        elif present and all(isinstance(v, bool) for v in present):
            series = pd.Series(values, dtype="boolean", index=frame.index)
        else:
            series = pd.Series(values, dtype="object", index=frame.index)
        columns[f"payload.{name}"] = series
    return pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)


_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1


def _integer_dtype(values: Sequence[int]) -> str:
    """The narrowest nullable dtype holding every value: Int64, UInt64, else object."""
    low, high = min(values), max(values)
    if _INT64[0] <= low and high <= _INT64[1]:
        return "Int64"
    if low >= 0 and high <= _UINT64_MAX:
        return "UInt64"
    return "object"


def stream_frame(
    store: EventStore, aggregate_id: str, types: PayloadTypes = None, **kwargs: Any
) -> pd.DataFrame:
    """The events of one aggregate in version order."""
    return events_frame(store.load_stream(aggregate_id), types, **kwargs)


def matches_event_type(event_type: str, wanted: str) -> bool:
    """``wanted`` is a full name (``bank.v1.MoneyDeposited``) or just the message name."""
    return event_type == wanted or ("." not in wanted and event_type.endswith("." + wanted))


def select_events(
    store: EventStore,
    aggregate_id: str | None = None,
    *,
    event_type: str | None = None,
    last: int | None = None,
) -> list[Event]:
    """The events ``%es_events`` shows: one stream or the whole log, filtered, the last N."""
    if last is not None and last < 1:
        raise ValueError(f"last must be 1 or more, got {last}")
    source: Iterable[Event]
    if aggregate_id:
        source = store.load_stream(aggregate_id)
    elif event_type and "." in event_type:
        source = store.iter_all(event_types=[event_type])
    else:
        source = store.iter_all()
    if event_type:
        source = (e for e in source if matches_event_type(e.event_type, event_type))
    if last is not None:
        return list(deque(source, maxlen=last))
    return list(source)


def store_events_frame(
    store: EventStore,
    aggregate_id: str | None = None,
    *,
    event_type: str | None = None,
    last: int | None = None,
    types: PayloadTypes = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """What ``%es_events`` shows; ``kwargs`` go to :func:`events_frame` (``time_from``, ...)."""
    selected = select_events(store, aggregate_id, event_type=event_type, last=last)
    return events_frame(selected, types, **kwargs)


def snapshots_frame(
    snapshots: Iterable[Snapshot],
    state_class: type[Message] | type[AggregateRoot] | None = None,
    *,
    schema_key: str | None = None,
) -> pd.DataFrame:
    """One row per snapshot; ``state`` is the decoded state when ``state_class`` is given.

    ``state_class`` is the state message class, or a generated aggregate class
    (its ``state_type`` and ``schema_key``). A snapshot records the schema key
    of the state it holds, and one of another schema is never decoded with
    ``state_class`` (DESIGN decision 8: it is never trusted; a load ignores it
    unless a snapshot upcaster converts it): its ``state`` is None and
    ``same_schema`` False. The key compared with is ``schema_key=``, else the
    aggregate class's, else that of the generated aggregates whose state is
    ``state_class``; with none of these (a hand-written aggregate: pass
    ``schema_key=Account.schema_key``), every row is decoded and
    ``same_schema`` is ``<NA>``, unchecked. Bytes that do not decode give a
    ``state`` of None.
    """
    message_class, keys = _state_schema(state_class, schema_key)
    rows = list(snapshots)
    created = [s.created_at if s.created_at is not None else pd.NaT for s in rows]
    frame = pd.DataFrame(
        {
            "aggregate_id": _strings([s.aggregate_id for s in rows]),
            "aggregate_type": _strings([s.aggregate_type for s in rows]),
            "version": _ints([s.version for s in rows]),
            "schema_key": _strings([s.schema_key for s in rows]),
            "size_bytes": _ints([len(s.data) for s in rows]),
            "created_at": pd.DatetimeIndex(pd.to_datetime(created, utc=True)).as_unit("us"),
        }
    )
    if message_class is not None:
        same = [None if not keys else s.schema_key in keys for s in rows]
        frame["state"] = pd.Series(
            [
                None if matches is False else _decoded_state(message_class, s.data)
                for s, matches in zip(rows, same, strict=True)
            ],
            dtype="object",
        )
        frame["same_schema"] = pd.Series(same, dtype="boolean")
    return frame


def _state_schema(
    state_class: type[Message] | type[AggregateRoot] | None, schema_key: str | None
) -> tuple[type[Message] | None, frozenset[str]]:
    """The message class snapshots decode to and the schema keys of that state (none: unknown)."""
    if state_class is None:
        if schema_key is not None:
            raise ValueError(
                "snapshots_frame: schema_key= says which snapshots to decode, so it needs "
                "state_class= too (the state message class, or the aggregate class)"
            )
        return None, frozenset()
    if isinstance(state_class, type) and issubclass(state_class, AggregateRoot):
        message_class = getattr(state_class, "state_type", None)
        if not (isinstance(message_class, type) and issubclass(message_class, Message)):
            raise TypeError(
                f"snapshots_frame: the aggregate class {state_class.__name__} has no state_type "
                "message class to decode its snapshots with. Pass the state message class "
                f"instead, with schema_key={state_class.__name__}.schema_key."
            )
        own = schema_key if schema_key is not None else state_class.schema_key
        return message_class, frozenset([own] if own else [])
    if not (isinstance(state_class, type) and issubclass(state_class, Message)):
        raise TypeError(
            "snapshots_frame: state_class must be the state's message class or an aggregate "
            f"class, got {type(state_class).__name__} {state_class!r:.60}"
        )
    if schema_key is not None:
        return state_class, frozenset([schema_key] if schema_key else [])
    return state_class, _schema_keys_of_state(state_class)


def _schema_keys_of_state(message_class: type[Message]) -> frozenset[str]:
    """The schema keys of the aggregate classes whose ``state_type`` is ``message_class``."""
    keys: set[str] = set()
    seen: set[type] = set()
    todo: list[type] = [AggregateRoot]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        key = getattr(cls, "schema_key", None)
        if getattr(cls, "state_type", None) is message_class and isinstance(key, str) and key:
            keys.add(key)
    return frozenset(keys)


def _decoded_state(message_class: type[Message], data: bytes) -> dict[str, Any] | None:
    try:
        return message_to_dict(message_class.FromString(data))
    except DecodeError:
        return None


class CheckpointSource(Protocol):
    def list_checkpoints(self) -> dict[str, int]: ...

    def head_position(self) -> int: ...


def checkpoints_frame(store: CheckpointSource) -> pd.DataFrame:
    """Each projection's checkpoint beside the log's head, and how far behind it is."""
    checkpoints = store.list_checkpoints()
    head = store.head_position()
    names = sorted(checkpoints)
    positions = [checkpoints[n] for n in names]
    return pd.DataFrame(
        {
            "projection": _strings(names),
            "checkpoint": _ints(positions),
            "head": _ints([head] * len(names)),
            "lag": _ints([max(head - p, 0) for p in positions]),
        }
    )
