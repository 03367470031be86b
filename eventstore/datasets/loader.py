"""Load a sample dataset: its proto becomes a live module, its events fill a store.

A dataset is a folder holding ``manifest.json``, the proto source of its
domain and ``events.jsonl`` (one stored event per line, payloads as proto
JSON; the format is described in datasets/README.md). Nothing about the
domain is hard-coded here: the loader reads the proto, generates the module
with ``generate_module`` and parses each payload with the class named by the
event's type, so a dataset describes itself and a new one is just a folder.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from types import ModuleType
from typing import Any, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import Message

from ..core.event_types import EventTypeRegistry
from ..core.events import EventMetadata, NewEvent
from ..core.ports import EventStore

FORMAT_VERSION = 1
"""The version of the dataset format this loader reads (``manifest.json``'s ``format``)."""

_METADATA_KEYS = ("causation_id", "correlation_id", "principal_id", "tenant_id")


class DatasetError(ValueError):
    """A dataset is unknown, or its files do not follow the dataset format."""


@dataclass(frozen=True)
class DatasetInfo:
    """What ``manifest.json`` says about a dataset."""

    name: str
    title: str
    description: str
    proto: str
    events: str
    event_count: int
    format: int = FORMAT_VERSION


@dataclass(frozen=True)
class DatasetSummary:
    """What a load put into the store, and what the dataset holds.

    A dataset loaded into a store that already has it (its commands are
    recognised by their ids) stores nothing again: ``events`` counts what this
    load stored, ``already_stored`` what it found stored, and the positions
    are those of the events this load stored (0 when it stored none). The
    aggregate and event-type counts describe the dataset's file.
    """

    name: str
    title: str
    events: int
    """Events this load stored."""
    aggregates: dict[str, int]
    """Number of aggregates per aggregate type, in the dataset."""
    event_types: dict[str, int]
    """Number of events per event type (full proto names), in first-seen order, in the dataset."""
    first_position: int
    last_position: int
    recorded_from: str
    recorded_to: str
    notes: list[str] = field(default_factory=list)
    already_stored: int = 0
    """Events of the dataset the store held before this load."""

    def __str__(self) -> str:
        kinds = ", ".join(f"{n} {t}" for t, n in self.aggregates.items())
        if self.events:
            stored = (
                f"{self.events} events of {kinds}, "
                f"positions {self.first_position}..{self.last_position}"
            )
            if self.already_stored:
                stored += f" ({self.already_stored} more were already in the store)"
        else:
            stored = f"nothing stored: its {self.already_stored} events of {kinds} were already"
            stored += " in the store"
        lines = [
            f"dataset {self.name!r} ({self.title}): {stored}, "
            f"recorded {self.recorded_from} to {self.recorded_to}"
        ]
        lines += [f"  {n:>5}  {t}" for t, n in self.event_types.items()]
        return "\n".join(lines)


class LoadedDataset(NamedTuple):
    """``store, module, summary = eventstore.datasets.load("bank")``."""

    store: EventStore
    module: ModuleType
    summary: DatasetSummary


LoadListener = Callable[[LoadedDataset], object]
"""Called with every dataset ``load`` returns (the notebook layer registers its classes)."""

_load_listeners: list[LoadListener] = []


def add_load_listener(listener: LoadListener) -> None:
    """Have ``listener(loaded)`` called after each ``load``.

    This is how ``%load_ext eventstore.notebook`` makes a loaded dataset's
    payloads decodable in ``%es_events`` without this package importing IPython.
    A listener that raises fails the ``load`` call: it is part of loading.
    """
    if listener not in _load_listeners:
        _load_listeners.append(listener)


def remove_load_listener(listener: LoadListener) -> None:
    """Stop calling ``listener``; removing one that is not there is harmless."""
    if listener in _load_listeners:
        _load_listeners.remove(listener)


def _root() -> Traversable:
    return resources.files(__package__ or "eventstore.datasets") / "data"


def available() -> list[str]:
    """The names of the datasets shipped with the package."""
    return sorted(
        entry.name
        for entry in _root().iterdir()
        if entry.is_dir() and (entry / "manifest.json").is_file()
    )


def _folder(name: str) -> Traversable:
    known = available()
    if name not in known:
        raise DatasetError(
            f"there is no dataset named {name!r} (available: {', '.join(known) or 'none'}). "
            "Pick one of those names."
        )
    return _root() / name


def info(name: str) -> DatasetInfo:
    """The manifest of dataset ``name``."""
    raw = json.loads((_folder(name) / "manifest.json").read_text(encoding="utf-8"))
    if raw.get("format") != FORMAT_VERSION:
        raise DatasetError(
            f"dataset {name!r} is in format {raw.get('format')!r}, this loader reads format "
            f"{FORMAT_VERSION}. Regenerate it with datasets/make_datasets.py."
        )
    try:
        return DatasetInfo(
            name=raw["name"],
            title=raw["title"],
            description=raw["description"],
            proto=raw["proto"],
            events=raw["events"],
            event_count=int(raw["event_count"]),
            format=raw["format"],
        )
    except KeyError as exc:
        raise DatasetError(
            f"dataset {name!r}: manifest.json lacks the key {exc.args[0]!r}; see "
            "datasets/README.md for the keys a manifest needs"
        ) from None


def proto_source(name: str) -> str:
    """The proto source of dataset ``name`` (what ``load`` generates the module from)."""
    return (_folder(name) / info(name).proto).read_text(encoding="utf-8")


def records(name: str) -> Iterator[dict[str, Any]]:
    """The raw lines of the dataset's ``events.jsonl``, as dicts, in log order."""
    text = (_folder(name) / info(name).events).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"dataset {name!r}: line {number} of events.jsonl is not JSON ({exc.msg}); "
                "each line must hold one event object"
            ) from None


def _metadata(raw: Mapping[str, Any]) -> EventMetadata:
    fields = {k: str(raw[k]) for k in _METADATA_KEYS if raw.get(k)}
    custom = {str(k): str(v) for k, v in raw.get("custom", {}).items()}
    return EventMetadata(**fields, custom=custom)


def _new_event(name: str, record: Mapping[str, Any], types: EventTypeRegistry) -> NewEvent:
    event_type = record["event_type"]
    cls = types.get(event_type)
    if cls is None:
        raise DatasetError(
            f"dataset {name!r}: event {record.get('event_id')!r} has type {event_type!r}, which "
            "its proto does not define. Add the message to the proto or fix the type name."
        )
    message: Message = json_format.ParseDict(record.get("data", {}), cls())
    metadata = dict(record.get("metadata", {}))
    custom = dict(metadata.get("custom", {}))
    if record.get("recorded_at"):
        # The store stamps events with the time of the load; keep the story's own time.
        custom["recorded_at"] = record["recorded_at"]
    metadata["custom"] = custom
    return NewEvent(
        record["event_id"], event_type, message.SerializeToString(), _metadata(metadata)
    )


def load(
    name: str, store: EventStore | None = None, *, module_name: str | None = None
) -> LoadedDataset:
    """Generate dataset ``name``'s module and append its events to ``store``.

    ``store`` defaults to a new in-memory ``SQLiteEventStore``. Events are
    appended in the file's order, one append per command (the events a
    command stored together), with the file's event ids, versions, command
    ids and metadata; the store stamps them with the time of the load, and
    the time the story recorded is kept in ``metadata.custom["recorded_at"]``.
    Loading the same dataset into a store twice stores it once (its commands
    are recognised by their ids); loading it into a store where another
    aggregate has one of its ids fails with ``ConcurrencyError``.
    """
    from ..codegen import generate_module

    manifest = info(name)
    module = generate_module(proto_source(name), name=module_name or name)
    messages = [
        value
        for key, value in vars(module).items()
        if not key.startswith("_") and isinstance(value, type) and issubclass(value, Message)
    ]
    types = EventTypeRegistry(messages)
    if store is None:
        from ..sqlite import SQLiteEventStore

        target: EventStore = SQLiteEventStore(":memory:")
    else:
        target = store
    aggregates: dict[str, set[str]] = {}
    by_type: Counter[str] = Counter()
    first = last = 0
    times: list[str] = []
    batch: list[NewEvent] = []
    batch_key: tuple[str, str, str] | None = None
    batch_version = 0

    stored = already = 0

    def flush() -> None:
        nonlocal first, last, stored, already
        if not batch or batch_key is None:
            return
        aggregate_id, aggregate_type, command_id = batch_key
        result = target.append(
            aggregate_id,
            aggregate_type,
            batch_version - 1,
            list(batch),
            command_id=command_id or None,
        )
        if result.already_processed:
            already += len(batch)
        elif result.events:
            first = first or result.events[0].position
            last = result.events[-1].position
            stored += len(result.events)
        batch.clear()

    count = 0
    expected: dict[str, int] = {}
    for record in records(name):
        try:
            aggregate_id = record["aggregate_id"]
            aggregate_type = record["aggregate_type"]
            version = int(record["version"])
            command_id = str(record.get("command_id", ""))
            event = _new_event(name, record, types)
        except KeyError as exc:
            raise DatasetError(
                f"dataset {name!r}: an event lacks the key {exc.args[0]!r} "
                f"(event {record.get('event_id')!r}); see datasets/README.md"
            ) from None
        want = expected.get(aggregate_id, 0) + 1
        if version != want:
            raise DatasetError(
                f"dataset {name!r}: event {record['event_id']!r} of {aggregate_id!r} has version "
                f"{version}, expected {want}. Versions of an aggregate must run 1, 2, 3, ... "
                "in file order."
            )
        expected[aggregate_id] = version
        key = (aggregate_id, aggregate_type, command_id)
        if key != batch_key or not command_id:
            flush()
            batch_key, batch_version = key, version
        batch.append(event)
        aggregates.setdefault(aggregate_type, set()).add(aggregate_id)
        by_type[event.event_type] += 1
        if record.get("recorded_at"):
            times.append(str(record["recorded_at"]))
        count += 1
    flush()
    if count != manifest.event_count:
        raise DatasetError(
            f"dataset {name!r}: manifest.json says {manifest.event_count} events, "
            f"events.jsonl holds {count}. Regenerate it with datasets/make_datasets.py."
        )
    summary = DatasetSummary(
        name=manifest.name,
        title=manifest.title,
        events=stored,
        already_stored=already,
        aggregates={t: len(ids) for t, ids in aggregates.items()},
        event_types=dict(by_type),
        first_position=first,
        last_position=last,
        recorded_from=min(times) if times else "",
        recorded_to=max(times) if times else "",
    )
    loaded = LoadedDataset(target, module, summary)
    for listener in list(_load_listeners):
        listener(loaded)
    return loaded
