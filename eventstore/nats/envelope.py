"""A stored ``Event`` as a bus message: its subject, headers and ``EventEnvelope`` payload.

The payload carries every field of the stored event, metadata and constraints
included; headers carry only what routing and dedupe need (nats-py rewrites CR
and LF in header values, so metadata cannot travel there).
"""

from __future__ import annotations

import functools
import hashlib
import re

from ..core.events import Event
from ..proto.eventsourcing.envelope_pb2 import EventEnvelope

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
POSITION = "Eventstore-Position"
EVENT_TYPE = "Eventstore-Event-Type"
#: The escaped aggregate id, sent only when the subject carries a hash of it (a long id).
AGGREGATE_ID = "Eventstore-Aggregate-Id"

#: The longest aggregate-id token a subject carries as it is (escaped); a longer one is
#: hashed. A server drops a client whose protocol line passes ``max_control_line``
#: (4 KiB by default) and nats-py does not reconnect after that: the subject is bounded.
MAX_ID_TOKEN = 1024
#: The same bound for the aggregate-type and event-type tokens.
MAX_TYPE_TOKEN = 512
#: Marks a hashed token; escaped tokens never hold it (``~`` is escaped as ``%7E``).
HASHED = "~"
_HASH_HEAD = 64  # readable characters kept before the hash

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")
_EMPTY = "%"


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode())


def escape_token(value: str) -> str:
    """``value`` as one subject token: bytes outside ``[A-Za-z0-9_-]`` as ``%XX``, reversibly.

    Dots, wildcards and spaces cannot appear in a token; ``bank.v1.Deposited``
    becomes ``bank%2Ev1%2EDeposited``. The empty string is ``%``.
    """
    if not value:
        return _EMPTY
    return _UNSAFE.sub(_percent, value)


def bounded_token(value: str, limit: int) -> str:
    """``escape_token(value)``, or, when that is longer than ``limit``, its first characters
    then ``~`` and 32 hex digits of the SHA-256 of ``value``: same value, same token."""
    token = escape_token(value)
    if len(token) <= limit:
        return token
    head = token[:_HASH_HEAD]
    cut = head.rfind("%", len(head) - 2)  # never keep half of a %XX
    if cut != -1:
        head = head[:cut]
    return f"{head}{HASHED}{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def type_token(value: str) -> str:
    """The token of an aggregate or event type (bounded like the id's)."""
    return bounded_token(value, MAX_TYPE_TOKEN)


@functools.lru_cache(maxsize=4096)
def _type_tokens(prefix: str, aggregate_type: str, event_type: str) -> str:
    """The subject up to the aggregate id: few distinct values, so cached (relay hot path)."""
    return f"{prefix}.{type_token(aggregate_type)}.{type_token(event_type)}."


def unescape_token(token: str) -> str:
    """The value of an escaped token; a hashed one (a long value) cannot be reversed."""
    if HASHED in token:
        raise ValueError(
            f"subject token {token[:80]!r}... is a hash of a long value, not reversible: the "
            f"event envelope carries the value (and the {AGGREGATE_ID} header the aggregate id)"
        )
    if token == _EMPTY:
        return ""
    if "%" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(token[i].encode())
            i += 1
    return raw.decode()


def subject_for(prefix: str, aggregate_type: str, event_type: str, aggregate_id: str) -> str:
    """``<prefix>.<AggregateType>.<EventType>.<aggregate id>``, each token escaped; a token
    longer than ``MAX_ID_TOKEN`` (``MAX_TYPE_TOKEN`` for the types) is hashed, so the
    subject stays far below the server's ``max_control_line``."""
    return _type_tokens(prefix, aggregate_type, event_type) + bounded_token(
        aggregate_id, MAX_ID_TOKEN
    )


def filter_subjects(
    prefix: str, event_types: list[str] | None, aggregate_types: list[str] | None
) -> list[str]:
    """The subjects a consumer filtered by event and aggregate types reads (sorted)."""
    aggs = [type_token(a) for a in aggregate_types] if aggregate_types else ["*"]
    types = [type_token(t) for t in event_types] if event_types else ["*"]
    if aggs == ["*"] and types == ["*"]:
        return [f"{prefix}.>"]
    return sorted(f"{prefix}.{a}.{t}.*" for a in aggs for t in types)


def encode_event(event: Event) -> bytes:
    envelope = EventEnvelope(
        event_id=event.event_id,
        aggregate_id=event.aggregate_id,
        aggregate_type=event.aggregate_type,
        event_type=event.event_type,
        version=event.version,
        position=event.position,
        timestamp_micros=event.timestamp_micros,
        data=event.data,
    )
    if event.metadata_json is not None:
        envelope.metadata_json = event.metadata_json
    if event.constraints_json is not None:
        envelope.constraints_json = event.constraints_json
    return envelope.SerializeToString()


def decode_event(payload: bytes) -> Event:
    """The stored event a bus message carries; raises ``google.protobuf`` ``DecodeError``."""
    e = EventEnvelope.FromString(payload)
    return Event(
        e.event_id,
        e.aggregate_id,
        e.aggregate_type,
        e.event_type,
        e.version,
        e.position,
        e.timestamp_micros,
        e.data,
        e.metadata_json if e.HasField("metadata_json") else None,
        e.constraints_json if e.HasField("constraints_json") else None,
    )


def headers_for(event: Event, expected_last_id: str | None = None) -> dict[str, str]:
    headers = {MSG_ID: event.event_id, POSITION: str(event.position), EVENT_TYPE: event.event_type}
    if len(event.aggregate_id) > MAX_ID_TOKEN // 12:  # a character escapes to 12 at most
        token = escape_token(event.aggregate_id)
        if len(token) > MAX_ID_TOKEN:
            headers[AGGREGATE_ID] = token
    if expected_last_id:
        headers[EXPECTED_LAST_MSG_ID] = expected_last_id
    return headers
