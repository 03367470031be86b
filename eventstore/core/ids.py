"""Event ids.

Ids made without a command are UUIDv7: time-ordered, so the store's unique
index on event ids grows at its right edge instead of at random places (see
toolchain-notes: random keys slow inserts as the store grows). Ids made for
a command are deterministic, so a retry of the same command produces the
same ids and is recognised even after its command record expired.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid

# A fixed namespace for deterministic ids; changing it would break idempotency
# of retries across versions of this library.
_EVENT_ID_NAMESPACE = uuid.UUID("6f1c1d52-5a0e-4f59-9a53-2d1f4f5e7a10")
_NAMESPACE_BYTES = _EVENT_ID_NAMESPACE.bytes
# A UUIDv7 command id, alone or as a tenant's (``<tenant>::<id>``, as a tenant-isolated
# repository hands it to the store).
_UUID7 = re.compile(
    r"(?:\A|::)([0-9a-f]{8}-[0-9a-f]{4})-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z"
)
# The RFC 4122 variant in the hex digit after the third dash: 10xx.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def deterministic_event_id(command_id: str, aggregate_id: str, index: int) -> str:
    """The id of the ``index``-th event (0-based) that ``command_id`` raised on an aggregate.

    A function of its arguments only: the UUIDv5 of the three, length-prefixed.
    When the command id is itself a lowercase UUIDv7 (as ``new_command_id`` and the
    generated clients make them; alone, or after a tenant's ``<tenant>::``), the
    event id takes the command's 48-bit time prefix instead (RFC 9562 version 8,
    the rest from the same hash), so event ids of recent commands stay close
    together in the store's unique index.
    """
    # uuid.uuid5 spelled out on strings: this runs once per stored event.
    # Length-prefixed, so that no two (command, aggregate) pairs spell the same name.
    name = f"{len(command_id)}:{command_id}{len(aggregate_id)}:{aggregate_id}{index}"
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()
    variant = _VARIANT[h[16]]
    uuid7 = _UUID7.search(command_id)
    if uuid7:
        return f"{uuid7[1]}-8{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


# Random bytes are drawn from os.urandom in chunks: each os.urandom call is a system
# call that lets go of the GIL, and on an event loop shared with busy threads getting
# it back waited up to the GIL's switch interval: the id of each SDK command cost the
# loop about 75 µs on average with 64 clients (cProfile of the loop's thread), more
# than the rest of the command's id work. The bytes are the same CSPRNG's.
_RANDOM_CHUNK = 4_096  # one system call per ~400 ids
_random_lock = threading.Lock()
_random_pool = b""
_random_at = 0


def random_bytes(n: int) -> bytes:
    """``n`` bytes from os.urandom, handed out from a chunk (never twice, nor after fork).

    For ids made on an event loop (event, command and trace ids): no system call,
    so no GIL hand-off, for most of them. ``n`` at most ``_RANDOM_CHUNK``.
    """
    global _random_pool, _random_at
    with _random_lock:
        start = _random_at
        if start + n > len(_random_pool):
            _random_pool, start = os.urandom(_RANDOM_CHUNK), 0
        _random_at = start + n
        return _random_pool[start : start + n]


def _forget_random_pool() -> None:
    """In a forked child: drop the parent's bytes (both would hand out the same ids)."""
    global _random_pool, _random_at, _random_lock
    _random_pool, _random_at, _random_lock = b"", 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_random_pool)


def new_event_id() -> str:
    """A random, time-ordered id (UUIDv7, RFC 9562)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(random_bytes(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    return str(uuid.UUID(int=value))


def new_command_id() -> str:
    return new_event_id()
