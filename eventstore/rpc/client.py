"""``ConnectTransport``: the SDK over HTTP to a ``ConnectApp`` (the third transport mode)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx
from google.protobuf import any_pb2
from google.protobuf.message import Message

from ..core import instrumentation
from ..core.errors import AppError
from ..core.headers import (
    COMMAND_ID_HEADER,
    MESSAGE_TYPE_HEADER,
    METADATA_HEADER,
    pack_custom_metadata,
)
from ..core.ids import new_command_id
from ..core.responses import (
    INTERNAL,
    INVALID_ARGUMENT,
    INVALID_REQUEST,
    NO_HANDLER,
    PERMISSION_DENIED,
    REQUEST_TOO_LARGE,
    TIMEOUT,
    UNAUTHENTICATED,
    UNAVAILABLE,
    Response,
    transport_timeout,
    transport_unavailable,
)
from .app import app_error_from_details

#: What HTTP can carry in a header: a token as the name, visible ASCII (and space, tab) as value.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


class ConnectTransport:
    """Sends each request as a Connect unary call (binary ``application/proto``) to ``url``.

    ``token`` is sent as ``Authorization: Bearer <token>``; ``headers`` are
    added to every request. The request's type goes in ``Es-Message-Type`` (a
    request of another type than the method's is ``INVALID_MESSAGE_TYPE``, as
    on every transport), the custom metadata entries (``Es-Meta-<key>``) in one
    ``Es-Metadata`` header, percent-encoded, so keys keep their case and values
    may hold any text (core/headers.py).

    A request that does not reach the server is ``UNAVAILABLE``, one without a
    reply in ``timeout`` seconds ``TIMEOUT``, both with the command id so the
    caller retries safely. A header HTTP cannot carry (not ASCII, a control
    character) is ``INVALID_ARGUMENT``, nothing sent. A refusal without an
    ``AppError`` in its details (a proxy, an older server) is mapped to the
    error table's code by its Connect code or HTTP status (``NO_HANDLER``,
    ``REQUEST_TOO_LARGE``, ``INVALID_REQUEST`` ...), with the command id.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._client = client

    async def request(
        self, subject: str, message: Message, headers: Mapping[str, str] | None = None
    ) -> Response:
        service, _, method = subject.rpartition(".")
        sent = pack_custom_metadata({**self.headers, **(headers or {})})
        sent.setdefault(COMMAND_ID_HEADER, new_command_id())
        command_id = sent[COMMAND_ID_HEADER]
        sent[MESSAGE_TYPE_HEADER] = message.DESCRIPTOR.full_name
        instrumentation.inject(sent)
        sent["Content-Type"] = "application/proto"
        sent["Connect-Protocol-Version"] = "1"
        unsendable = _unsendable_header(subject, command_id, sent)
        if unsendable is not None:
            return Response.failure(unsendable)
        data = message.SerializeToString()
        client = self._client or httpx.AsyncClient(timeout=self.timeout)
        try:
            reply = await client.post(
                f"{self.url}/{service}/{method}",
                content=data,
                headers=sent,
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            return Response.failure(transport_timeout(subject, command_id, self.timeout))
        except httpx.HTTPError as exc:
            return Response.failure(transport_unavailable(subject, command_id, str(exc)))
        finally:
            if self._client is None:
                await client.aclose()
        if reply.status_code == 200:
            # The body's type is the one the generated client passes to unwrap.
            return Response.ok(any_pb2.Any(value=reply.content))
        return Response.failure(_error_of(subject, command_id, len(data), reply))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _unsendable_header(
    subject: str, command_id: str, headers: Mapping[str, str]
) -> AppError | None:
    """``INVALID_ARGUMENT`` naming the first header HTTP cannot carry (never its value:
    it may be a credential), else None."""
    for name, value in headers.items():
        if _HEADER_NAME.fullmatch(name) and _HEADER_VALUE.fullmatch(value):
            continue
        what = "name" if not _HEADER_NAME.fullmatch(name) else "value"
        shown = name if _HEADER_NAME.fullmatch(name) else ascii(name)[1:-1]
        return AppError(
            INVALID_ARGUMENT,
            f"the request to {subject} was not sent: the {what} of its header {shown!r} holds "
            "a character HTTP headers cannot carry (only printable ASCII)",
            "Use ASCII in that header, or percent-encode it yourself; custom metadata "
            f"entries may hold any text (they travel percent-encoded in {METADATA_HEADER}).",
            {"subject": subject, "command_id": command_id, "header": shown},
        )
    return None


#: The error table's code of a refusal without an AppError: by its Connect code ...
_BY_CONNECT_CODE = {
    "unimplemented": NO_HANDLER,
    "resource_exhausted": REQUEST_TOO_LARGE,
    "invalid_argument": INVALID_REQUEST,
    "unauthenticated": UNAUTHENTICATED,
    "permission_denied": PERMISSION_DENIED,
    "unavailable": UNAVAILABLE,
    "deadline_exceeded": TIMEOUT,
}
#: ... else by its HTTP status (Connect's mapping of a status without a Connect body).
_BY_STATUS = {
    400: INVALID_REQUEST,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NO_HANDLER,
    405: INVALID_REQUEST,
    413: REQUEST_TOO_LARGE,
    415: INVALID_REQUEST,
    429: UNAVAILABLE,
    501: NO_HANDLER,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: TIMEOUT,
}


def _error_of(subject: str, command_id: str, size: int, reply: httpx.Response) -> AppError:
    body: Any = {}
    try:
        body = json.loads(reply.content or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    details = body.get("details", [])
    found = app_error_from_details(details if isinstance(details, list) else [])
    if found is not None:
        return found
    # No AppError: the reply is not a ConnectApp's (a proxy, an older server).
    status = reply.status_code
    connect_code = str(body.get("code", ""))
    said = f"HTTP {status}" + (f" {connect_code}" if connect_code else "")
    text = str(body.get("message", "")) or reply.reason_phrase
    code = _BY_CONNECT_CODE.get(connect_code) or _BY_STATUS.get(status)
    if code is None:
        code = INTERNAL if status >= 500 else INVALID_REQUEST
    facts = {"subject": subject, "command_id": command_id, "http_status": str(status)}
    if code == UNAVAILABLE:
        return transport_unavailable(subject, command_id, f"{said}: {text}")
    if code == TIMEOUT:
        return AppError(
            TIMEOUT,
            f"{subject} timed out behind HTTP ({said}: {text}): the command may or may not "
            "have been applied",
            f"Send the request again with the same command id ({command_id}); it is applied "
            "once. If the first try was applied, the reply is its original result.",
            facts,
        )
    if code == REQUEST_TOO_LARGE:
        return AppError(
            REQUEST_TOO_LARGE,
            f"the request to {subject} is {size} bytes, too large for the server ({said}: "
            f"{text}); the handler did not run",
            "Send less in one request (keep large blobs outside the event store), or raise "
            "the server's limit on request bodies.",
            {**facts, "size": str(size)},
        )
    if code == NO_HANDLER:
        solution = (
            "Check the transport's URL and that the server serves this service; regenerate "
            "the client if the proto changed."
        )
    else:
        solution = "See the server's reply; the request did not reach a handler."
    return AppError(code, f"{subject} failed over HTTP: {said}: {text}", solution, facts)


__all__ = ["ConnectTransport"]
