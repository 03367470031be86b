"""``ConnectTransport``: the SDK over HTTP to a ``ConnectApp`` (the third transport mode)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
from google.protobuf import any_pb2
from google.protobuf.message import Message

from ..core import instrumentation
from ..core.errors import AppError
from ..core.headers import COMMAND_ID_HEADER
from ..core.ids import new_command_id
from ..core.responses import (
    INTERNAL,
    Response,
    transport_timeout,
    transport_unavailable,
)
from .app import app_error_from_details


class ConnectTransport:
    """Sends each request as a Connect unary call (binary ``application/proto``) to ``url``.

    ``token`` is sent as ``Authorization: Bearer <token>``; ``headers`` are
    added to every request. A request that does not reach the server is
    ``UNAVAILABLE``, one without a reply in ``timeout`` seconds ``TIMEOUT``,
    both with the command id so the caller retries safely.
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
        sent = {**self.headers, **(headers or {})}
        sent.setdefault(COMMAND_ID_HEADER, new_command_id())
        command_id = sent[COMMAND_ID_HEADER]
        instrumentation.inject(sent)
        sent["Content-Type"] = "application/proto"
        sent["Connect-Protocol-Version"] = "1"
        client = self._client or httpx.AsyncClient(timeout=self.timeout)
        try:
            reply = await client.post(
                f"{self.url}/{service}/{method}",
                content=message.SerializeToString(),
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
        return Response.failure(_error_of(subject, reply))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _error_of(subject: str, reply: httpx.Response) -> AppError:
    body: dict[str, Any] = {}
    try:
        body = json.loads(reply.content or b"{}")
    except ValueError:
        body = {}
    found = app_error_from_details(body.get("details", []))
    if found is not None:
        return found
    code = str(body.get("code", "")) or f"http {reply.status_code}"
    return AppError(
        INTERNAL if reply.status_code >= 500 else code.upper(),
        f"{subject} failed over HTTP: {code}: {body.get('message', reply.reason_phrase)}",
        "See the server's reply code; the request did not reach a handler.",
        {"subject": subject, "http_status": str(reply.status_code)},
    )


__all__ = ["ConnectTransport"]
