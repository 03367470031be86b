"""Connecting to NATS: one set of options (servers, credentials, TLS) for every client here.

``NatsServiceHost`` and ``NatsTransport`` take the same keyword options and
pass them to ``nats.connect`` through ``connect_options``, so a deployment
configures authentication once: a list of server URLs (a cluster), user and
password, a token, an nkey seed or a creds file, and TLS (an ``ssl.SSLContext``
or a CA file). Reconnect waits are short by default: a client of a cluster
moves to another node within a second instead of NATS's default two.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client

log = logging.getLogger("eventstore.nats")


@dataclass(frozen=True, slots=True)
class NatsConnectOptions:
    """Where the NATS servers are and how to authenticate to them.

    ``servers`` is one URL or a list (a cluster; the client moves between
    them). Give at most one way to authenticate: ``user``/``password``,
    ``token``, ``nkeys_seed`` (a file holding an nkey seed) or ``creds`` (a
    ``.creds`` file with a JWT and seed). ``tls`` is an ``ssl.SSLContext``;
    ``tls_ca`` a CA file to verify the servers with (a context is made).
    """

    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkeys_seed: str | None = None
    creds: str | None = None
    tls: ssl.SSLContext | None = None
    tls_ca: str | None = None
    name: str | None = None
    reconnect_time_wait: float = 0.5
    connect_timeout: float = 2.0

    @classmethod
    def of(cls, servers: str | Sequence[str], **options: Any) -> NatsConnectOptions:
        urls = (servers,) if isinstance(servers, str) else tuple(servers)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise ValueError(
                f"servers must be a NATS URL or a list of them (nats://host:4222), got {servers!r}"
            )
        ways = [k for k in ("token", "nkeys_seed", "creds") if options.get(k)]
        if options.get("user") or options.get("password"):
            ways.append("user/password")
        if len(ways) > 1:
            raise ValueError(
                f"give one way to authenticate to NATS, got {', '.join(ways)}; keep the one "
                "your server's accounts use"
            )
        return cls(urls, **options)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``nats.connect`` these options stand for."""
        out: dict[str, Any] = {
            "servers": list(self.servers),
            "reconnect_time_wait": self.reconnect_time_wait,
            "connect_timeout": self.connect_timeout,
            "max_reconnect_attempts": -1,
            "error_cb": _log_error,
        }
        if self.name:
            out["name"] = self.name
        if self.user is not None:
            out["user"] = self.user
        if self.password is not None:
            out["password"] = self.password
        if self.token:
            out["token"] = self.token
        if self.nkeys_seed:
            out["nkeys_seed"] = self.nkeys_seed
        if self.creds:
            out["user_credentials"] = self.creds
        tls = self.tls
        if tls is None and self.tls_ca:
            tls = ssl.create_default_context(cafile=self.tls_ca)
        if tls is not None:
            out["tls"] = tls
        return out

    async def connect(self) -> Client:
        """A connected client; fails within about ``connect_timeout`` per server.

        nats-py retries a first connection as often as a reconnection (here: for
        ever), so the first one is bounded here: a wrong URL fails instead of hanging.
        """
        bound = self.connect_timeout * max(2, 2 * len(self.servers)) + 1.0
        try:
            return await asyncio.wait_for(nats.connect(**self.kwargs()), bound)
        except TimeoutError:
            raise ConnectionError(
                f"cannot connect to NATS at {', '.join(self.servers)} within {bound:g} s: "
                "check that a server runs there and that its port is reachable"
            ) from None


async def _log_error(error: Exception) -> None:
    # nats-py's default logs every failed attempt with a traceback.
    log.warning("NATS connection: %s: %s", type(error).__name__, error)


__all__ = ["NatsConnectOptions"]
