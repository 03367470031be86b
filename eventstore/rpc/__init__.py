"""HTTP for every generated service: the Connect protocol, served and called.

``ConnectApp`` is an ASGI application serving each bound service at
``/<package>.<Service>/<Method>`` (Connect unary, JSON with the proto3 JSON
mapping or binary ``application/proto``) through the same ``Router`` as the
in-process and NATS paths. ``ConnectTransport`` is the client side: the SDK's
third transport. This package is the only one importing ``connectrpc``,
``protobuf`` (protobuf-py) and ``uvicorn`` (the ``rpc`` extra).
"""

from .app import ConnectApp, serve_http
from .client import ConnectTransport

__all__ = ["ConnectApp", "ConnectTransport", "serve_http"]
