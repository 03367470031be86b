"""A core ``Transport`` over NATS request-reply: the generated SDK, unchanged, in production.

``NatsTransport(servers)`` sends a request's proto bytes to its subject with
the ``Es-*`` headers, the request's type (``Es-Message-Type``) and a W3C
``traceparent``, and reads back the ``eventsourcing.Response`` a
``NatsServiceHost`` replies. What the wire itself does wrong becomes an
``AppError`` of ``ERROR_CODES``, like any reply: nobody serves the subject ->
``UNAVAILABLE``; no reply in time -> ``TIMEOUT`` with ``details["command_id"]``
(retry with it: the command is applied once); a request over the server's
``max_payload`` -> ``REQUEST_TOO_LARGE`` (nothing was sent).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client
from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    ConnectionReconnectingError,
    MaxPayloadError,
    NoRespondersError,
    NoServersError,
)
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError

from ..core import instrumentation
from ..core.errors import AppError
from ..core.headers import (
    COMMAND_ID_HEADER,
    CUSTOM_METADATA_PREFIX,
    MESSAGE_TYPE_HEADER,
    TRACEPARENT_HEADER,
    pack_custom_metadata,
)
from ..core.ids import new_command_id, random_bytes
from ..core.responses import (
    _RETRY,
    INTERNAL,
    INVALID_RESPONSE_TYPE,
    REQUEST_TOO_LARGE,
    UNAVAILABLE,
    Response,
    transport_timeout,
    transport_unavailable,
)
from ..proto.eventsourcing import response_pb2
from .connection import NatsOptions, close_quietly
from .service import ERROR_HEADER, connect_bounded

#: Seconds a request waits for its reply before ``TIMEOUT``.
DEFAULT_TIMEOUT = 5.0


def new_traceparent() -> str:
    """A fresh W3C trace context (sampled), for a request that arrives without one."""
    # Chunked os.urandom: a system call per request let go of the GIL on the loop.
    return f"00-{random_bytes(16).hex()}-{random_bytes(8).hex()}-01"


class NatsTransport:
    """Sends requests to whatever serves their subject over NATS (a ``Transport``).

    Connects on ``async with``, ``await connect()`` or the first request.
    ``timeout`` bounds each request; the keyword options (``user``/``password``,
    ``token``, ``nkeys_seed``, ``user_credentials``, ``tls_ca``,
    ``tls_cert``/``tls_key``) are ``NatsOptions``'. ``close()`` (the end of
    ``async with``) answers the requests still waiting for a reply at once with
    ``UNAVAILABLE``, and a closed transport sends nothing more (``UNAVAILABLE``,
    "closed") until ``connect()`` is called again.
    """

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        **connect: Any,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        #: Sent with every request (credentials for the host's ``authenticate`` hook:
        #: ``{"Authorization": "Bearer <jwt>"}`` or ``{"X-Api-Key": key}``).
        self.headers = dict(headers or {})
        self.options = NatsOptions.of(servers, **connect)
        self.timeout = timeout
        self._nc: Client | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._calls: set[asyncio.Future[Any]] = set()  # requests waiting for their reply

    async def connect(self) -> NatsTransport:
        """Connect now (a closed transport is opened again)."""
        self._closed = False
        await self._connect()
        return self

    async def _connect(self) -> None:
        async with self._lock:
            if self._closed:
                return
            if self._nc is None or self._nc.is_closed:
                self._nc = await connect_bounded(self.options)

    async def close(self) -> None:
        """Disconnect; requests waiting for a reply get ``UNAVAILABLE`` at once."""
        self._closed = True
        calls, self._calls = list(self._calls), set()
        for call in calls:
            call.cancel()
        nc, self._nc = self._nc, None
        if nc is not None:
            await close_quietly(nc)  # a server that went away must not fail the caller's exit

    async def __aenter__(self) -> NatsTransport:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connection(self) -> Client | None:
        return self._nc

    @property
    def is_closed(self) -> bool:
        """True after ``close()`` (until ``connect()``)."""
        return self._closed

    def _refused_after_close(self, subject: str, command_id: str) -> Response:
        servers = ", ".join(self.options.servers)
        return Response.failure(
            AppError(
                UNAVAILABLE,
                f"the request to {subject} was not sent: this NatsTransport (to {servers}) "
                "is closed",
                "Make calls inside 'async with NatsTransport(...)', or call "
                "await transport.connect() to open it again.",
                {"subject": subject, "command_id": command_id},
            )
        )

    async def request(
        self, subject: str, message: Message, headers: Mapping[str, str] | None = None
    ) -> Response:
        sent = {**self.headers, **(headers or {})}
        command_id = sent.get(COMMAND_ID_HEADER) or new_command_id()
        sent[COMMAND_ID_HEADER] = command_id
        if self._closed:
            return self._refused_after_close(subject, command_id)
        sent[MESSAGE_TYPE_HEADER] = message.DESCRIPTOR.full_name
        if not sent.get(TRACEPARENT_HEADER):
            instrumentation.inject(sent)  # the current span's context, when traced
        if not sent.get(TRACEPARENT_HEADER):
            sent[TRACEPARENT_HEADER] = new_traceparent()
        sent = _nats_headers(sent)
        data = message.SerializeToString()
        nc = self._nc
        if nc is None or nc.is_closed:
            try:
                await self._connect()
            except (NoServersError, NatsError, OSError) as exc:
                cause = f"cannot connect to NATS at {', '.join(self.options.servers)} ({exc})"
                return Response.failure(transport_unavailable(subject, command_id, cause))
            nc = self._nc
            if self._closed or nc is None:
                return self._refused_after_close(subject, command_id)
        if nc.is_reconnecting:
            # nats-py would buffer the request until the server is back, and the caller
            # would wait its whole timeout to hear TIMEOUT ("may have been applied") for
            # a request that was never sent.
            cause = "the NATS connection is down and reconnecting; the request was not sent"
            return Response.failure(transport_unavailable(subject, command_id, cause))
        limit = nc.max_payload
        if len(data) > limit:
            return Response.failure(_request_too_large(subject, command_id, len(data), limit))
        call = asyncio.ensure_future(nc.request(subject, data, timeout=self.timeout, headers=sent))
        self._calls.add(call)
        try:
            reply = await call
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if call.cancelled() and self._closed and not (current and current.cancelling()):
                return Response.failure(_closed_in_flight(subject, command_id))
            raise
        except NoRespondersError:
            return Response.failure(
                transport_unavailable(subject, command_id, "no service serves that subject")
            )
        except (TimeoutError, NatsTimeoutError):
            return Response.failure(transport_timeout(subject, command_id, self.timeout))
        except MaxPayloadError:
            return Response.failure(_request_too_large(subject, command_id, len(data), limit))
        except (
            ConnectionClosedError,
            ConnectionDrainingError,
            ConnectionReconnectingError,
        ) as exc:
            cause = f"the NATS connection is down ({type(exc).__name__})"
            return Response.failure(transport_unavailable(subject, command_id, cause))
        finally:
            self._calls.discard(call)
        return _response_of(subject, reply.data, reply.headers or {})


def _closed_in_flight(subject: str, command_id: str) -> AppError:
    return AppError(
        UNAVAILABLE,
        f"the request to {subject} was sent, but its NatsTransport was closed before the "
        "reply came: the command may or may not have been applied",
        _RETRY.format(command_id=command_id)
        + " If the first try was applied, the reply is its original result.",
        {"subject": subject, "command_id": command_id},
    )


#: A header name nats-py sends (an HTTP token); it refuses any other with BadHeaderError.
_NATS_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _nats_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` as NATS carries them as sent: custom metadata packed into ``Es-Metadata``
    when an entry would not survive as its own header (nats-py refuses a key with a space,
    and trims values and turns line breaks into spaces)."""
    custom = {k: v for k, v in headers.items() if k.startswith(CUSTOM_METADATA_PREFIX)}
    if any(
        not _NATS_HEADER_KEY.fullmatch(k) or v != v.strip() or "\r" in v or "\n" in v
        for k, v in custom.items()
    ):
        return pack_custom_metadata(headers)
    return headers


def _response_of(subject: str, data: bytes, headers: Mapping[str, str]) -> Response:
    try:
        proto = response_pb2.Response.FromString(data)
    except DecodeError:
        proto = None
    if proto is None or (not data and ERROR_HEADER in headers):
        service_error = headers.get(ERROR_HEADER)
        if service_error:
            # A responder that is not an eventstore host (or a micro service's own error).
            return Response.failure(
                AppError(
                    INTERNAL,
                    f"the service on {subject} failed: {service_error}",
                    "See the service's log.",
                    {"subject": subject},
                )
            )
        return Response.failure(
            AppError(
                INVALID_RESPONSE_TYPE,
                f"the reply from {subject} is not an eventsourcing.Response",
                "Serve the subject with a NatsServiceHost (or reply with the "
                "eventsourcing.Response proto).",
                {"subject": subject},
            )
        )
    return Response.from_proto(proto)


def _request_too_large(subject: str, command_id: str, size: int, limit: int) -> AppError:
    return AppError(
        REQUEST_TOO_LARGE,
        f"the request to {subject} is {size} bytes, over the NATS server's max_payload of "
        f"{limit}; nothing was sent",
        "Send less in one request (keep large blobs outside the event store), or raise "
        "max_payload in the NATS server's configuration.",
        {"subject": subject, "command_id": command_id, "size": str(size), "limit": str(limit)},
    )


__all__ = ["DEFAULT_TIMEOUT", "NatsTransport", "new_traceparent"]
