"""The stored event envelope and the event about to be stored.

Reading the log is the hot path of every projection and replay, so an
``Event`` keeps its metadata, constraints and timestamp in their stored form
and decodes them on first access.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .constraints import UniqueConstraint

# json.dumps(x, separators=(",", ":")) builds an encoder per call; this is the same encoder, once.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
#: A string as a JSON string literal, exactly as json.dumps writes it.
quote_json = encode_basestring_ascii


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """Who and what caused an event. ``custom`` holds anything else (string values)."""

    causation_id: str = ""
    correlation_id: str = ""
    principal_id: str = ""
    tenant_id: str = ""
    custom: Mapping[str, str] = field(default_factory=dict)

    def merged(self, other: EventMetadata | None) -> EventMetadata:
        """``other``'s non-empty fields over this one's."""
        if other is None:
            return self
        return EventMetadata(
            causation_id=other.causation_id or self.causation_id,
            correlation_id=other.correlation_id or self.correlation_id,
            principal_id=other.principal_id or self.principal_id,
            tenant_id=other.tenant_id or self.tenant_id,
            custom={**self.custom, **other.custom},
        )

    def to_json(self) -> str | None:
        """Compact JSON, or None when there is nothing to store."""
        if not (self.correlation_id or self.principal_id or self.tenant_id or self.custom):
            # The usual case, a command's id alone: the same text, written without a dict.
            return f'{{"c":{quote_json(self.causation_id)}}}' if self.causation_id else None
        raw: dict[str, Any] = {}
        if self.causation_id:
            raw["c"] = self.causation_id
        if self.correlation_id:
            raw["r"] = self.correlation_id
        if self.principal_id:
            raw["p"] = self.principal_id
        if self.tenant_id:
            raw["t"] = self.tenant_id
        if self.custom:
            raw["x"] = dict(self.custom)
        return _compact_json(raw) if raw else None

    @classmethod
    def from_json(cls, text: str | None) -> EventMetadata:
        if not text:
            return _EMPTY_METADATA
        raw = json.loads(text)
        return cls(
            causation_id=raw.get("c", ""),
            correlation_id=raw.get("r", ""),
            principal_id=raw.get("p", ""),
            tenant_id=raw.get("t", ""),
            custom=raw.get("x", {}),
        )


_EMPTY_METADATA = EventMetadata()


def encode_constraints(constraints: Sequence[UniqueConstraint]) -> str | None:
    if not constraints:
        return None
    return _compact_json([c.to_json() for c in constraints])


def decode_constraints(text: str | None) -> tuple[UniqueConstraint, ...]:
    if not text:
        return ()
    return tuple(UniqueConstraint.from_json(raw) for raw in json.loads(text))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def micros_from_timestamp(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} has no time zone; pass an aware datetime in UTC")
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class Event:
    """An event as stored: the envelope around the proto payload.

    ``position`` is the global commit order assigned by the store; ``version``
    the 1-based, gapless place in its aggregate's stream; ``event_type`` the
    proto full name of the payload message; ``data`` the payload's bytes.
    """

    __slots__ = (
        "_constraints",
        "_constraints_json",
        "_metadata",
        "_metadata_json",
        "aggregate_id",
        "aggregate_type",
        "data",
        "event_id",
        "event_type",
        "position",
        "timestamp_micros",
        "version",
    )

    def __init__(
        self,
        event_id: str,
        aggregate_id: str,
        aggregate_type: str,
        event_type: str,
        version: int,
        position: int,
        timestamp_micros: int,
        data: bytes,
        metadata_json: str | None = None,
        constraints_json: str | None = None,
    ) -> None:
        self.event_id = event_id
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        self.event_type = event_type
        self.version = version
        self.position = position
        self.timestamp_micros = timestamp_micros
        self.data = data
        self._metadata_json = metadata_json
        self._metadata: EventMetadata | None = None
        self._constraints_json = constraints_json
        self._constraints: tuple[UniqueConstraint, ...] | None = None

    @property
    def timestamp(self) -> datetime:
        """Commit time in UTC, microsecond precision."""
        return timestamp_from_micros(self.timestamp_micros)

    @property
    def metadata(self) -> EventMetadata:
        if self._metadata is None:
            self._metadata = EventMetadata.from_json(self._metadata_json)
        return self._metadata

    @property
    def metadata_json(self) -> str | None:
        return self._metadata_json

    @property
    def constraints(self) -> tuple[UniqueConstraint, ...]:
        if self._constraints is None:
            self._constraints = decode_constraints(self._constraints_json)
        return self._constraints

    @property
    def constraints_json(self) -> str | None:
        return self._constraints_json

    def with_payload(self, event_type: str, data: bytes) -> Event:
        """A copy carrying another payload (used by upcasters)."""
        return Event(
            self.event_id,
            self.aggregate_id,
            self.aggregate_type,
            event_type,
            self.version,
            self.position,
            self.timestamp_micros,
            data,
            self._metadata_json,
            self._constraints_json,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.event_id == other.event_id
            and self.position == other.position
            and self.version == other.version
            and self.aggregate_id == other.aggregate_id
            and self.event_type == other.event_type
            and self.data == other.data
            and self.timestamp_micros == other.timestamp_micros
            and self.metadata == other.metadata
            and self.constraints == other.constraints
        )

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __repr__(self) -> str:
        return (
            f"Event(position={self.position}, aggregate_id={self.aggregate_id!r}, "
            f"version={self.version}, event_type={self.event_type!r}, event_id={self.event_id!r})"
        )


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event handed to the store for appending: everything but position and time."""

    event_id: str
    event_type: str
    data: bytes
    metadata: EventMetadata = _EMPTY_METADATA
    constraints: tuple[UniqueConstraint, ...] = ()

    def with_id(self, event_id: str) -> NewEvent:
        return replace(self, event_id=event_id)
