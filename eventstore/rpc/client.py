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

#: What HTTP can carry in a header: a token as the name, visible ASCII (and space, tab) as
#: value, but not at its start or end (HTTP strips those blanks; h11 refuses to send them).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?")
_HEADER_CHARACTERS = re.compile(r"[\t\x20-\x7e]*")
#: The form of a ConnectTransport's URL (what the error of a malformed one shows).
_URL_FORM = "http://host:port or https://host[:port][/path prefix]"


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

    ``url`` is checked here: one that is not ``http(s)://host[:port][/prefix]``
    (no host, a port outside 1-65535, a query) raises ``ValueError``. After
    ``aclose()`` (or once the ``client`` given is closed) a call is
    ``UNAVAILABLE``, nothing sent.
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
        self.url = _checked_url(url)
        self.timeout = timeout
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._client = client
        self._closed = False

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
        if self._closed or (self._client is not None and self._client.is_closed):
            return Response.failure(self._refused_after_close(subject, command_id))
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
            # Never str(exc): httpx's text may quote a header (a bearer token).
            return Response.failure(transport_unavailable(subject, command_id, self._cause(exc)))
        finally:
            if self._client is None:
                await client.aclose()
        if reply.status_code == 200:
            # The body's type is the one the generated client passes to unwrap.
            return Response.ok(any_pb2.Any(value=reply.content))
        return Response.failure(_error_of(subject, command_id, len(data), reply))

    async def aclose(self) -> None:
        """Close the transport (and the ``client`` it was given); later calls are
        ``UNAVAILABLE``, nothing sent."""
        self._closed = True
        if self._client is not None:
            await self._client.aclose()

    def _cause(self, exc: httpx.HTTPError) -> str:
        """What went wrong on the way, without httpx's text (it may quote headers)."""
        name = type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            return f"could not connect to {_shown(self.url)} ({name})"
        if isinstance(exc, httpx.LocalProtocolError):
            return f"the request could not be written as HTTP ({name})"
        return f"the HTTP exchange with {_shown(self.url)} failed ({name})"

    def _refused_after_close(self, subject: str, command_id: str) -> AppError:
        return AppError(
            UNAVAILABLE,
            f"the request to {subject} was not sent: this ConnectTransport (to "
            f"{_shown(self.url)}) is closed",
            "Make calls before aclose(), or make a new ConnectTransport.",
            {"subject": subject, "command_id": command_id},
        )


def _shown(url: str) -> str:
    """``url`` as an error may show it: without a password, cut to 200 characters."""
    try:
        parsed = httpx.URL(url)
        if parsed.password:
            url = str(parsed.copy_with(password="***"))
    except (httpx.InvalidURL, TypeError, ValueError):
        pass
    return "".join(c if c.isprintable() else "?" for c in url[:200])


def _checked_url(url: str) -> str:
    """``url`` without a trailing '/', when it is ``http(s)://host[:port][/prefix]``;
    else ``ValueError`` naming it and the expected form."""

    def refused(problem: str) -> ValueError:
        return ValueError(
            f"ConnectTransport URL {_shown(str(url))!r} {problem}; expected {_URL_FORM} "
            "(e.g. http://127.0.0.1:8080)"
        )

    if not isinstance(url, str):
        raise refused("is not a string")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise refused(f"does not parse ({type(exc).__name__})") from None
    if parsed.scheme not in ("http", "https"):
        raise refused("does not start with http:// or https://")
    if not parsed.host:
        raise refused("names no host")
    if port is not None and not 1 <= port <= 65535:
        raise refused(f"has port {port}, outside 1-65535")
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise refused("has a query or fragment (the method's path is added to the URL)")
    return url.rstrip("/")


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
        details = {"subject": subject, "command_id": command_id, "header": shown}
        if what == "value" and _HEADER_CHARACTERS.fullmatch(value):
            return AppError(
                INVALID_ARGUMENT,
                f"the request to {subject} was not sent: the value of its header {shown!r} "
                "begins or ends with a blank (space or tab), which HTTP cannot carry",
                "Strip the blanks from that value (a token or id copied with a space?).",
                details,
            )
        return AppError(
            INVALID_ARGUMENT,
            f"the request to {subject} was not sent: the {what} of its header {shown!r} holds "
            "a character HTTP headers cannot carry (only printable ASCII)",
            "Use ASCII in that header, or percent-encode it yourself; custom metadata "
            f"entries may hold any text (they travel percent-encoded in {METADATA_HEADER}).",
            details,
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
