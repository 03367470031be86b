"""Event ids.

Ids made without a command are UUIDv7: time-ordered, so the store's unique
index on event ids grows at its right edge instead of at random places (see
toolchain-notes: random keys slow inserts as the store grows). Ids made for
a command are deterministic, so a retry of the same command produces the
same ids and is recognised even after its command record expired.
"""

from __future__ import annotations

import os
import time
import uuid

# A fixed namespace for deterministic ids; changing it would break idempotency
# of retries across versions of this library.
_EVENT_ID_NAMESPACE = uuid.UUID("6f1c1d52-5a0e-4f59-9a53-2d1f4f5e7a10")


def deterministic_event_id(command_id: str, aggregate_id: str, index: int) -> str:
    """The id of the ``index``-th event (0-based) that ``command_id`` raised on an aggregate.

    A function of its arguments only. When the command id is itself a UUIDv7
    (as ``new_command_id`` and the generated clients make them), the event id
    keeps its 48-bit time prefix, so event ids of recent commands stay close
    together in the store's unique index; otherwise it is a plain UUIDv5.
    """
    named = uuid.uuid5(_EVENT_ID_NAMESPACE, f"{command_id}\x1f{aggregate_id}\x1f{index}")
    millis = _uuid7_millis(command_id)
    if millis is None:
        return str(named)
    # RFC 9562 version 8 ("custom"): time prefix of the command, the rest from the name hash.
    value = (millis << 80) | (named.int & ((1 << 80) - 1))
    value = (value & ~(0xF << 76)) | (0x8 << 76)
    return str(uuid.UUID(int=value))


def _uuid7_millis(text: str) -> int | None:
    if len(text) != 36 or text[14] != "7":
        return None
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    return parsed.int >> 80 if parsed.version == 7 else None


def new_event_id() -> str:
    """A random, time-ordered id (UUIDv7, RFC 9562)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    return str(uuid.UUID(int=value))


def new_command_id() -> str:
    return new_event_id()
