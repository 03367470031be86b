"""How every NATS-facing object connects: servers, credentials, TLS, and its own I/O thread.

Every public constructor of the adapter takes ``NatsOptions``' fields as keyword
arguments, so one deployment setting (a list of cluster servers, a user, a CA)
reaches the bus, the relay and the consumers alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import ssl
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client

from .errors import NatsTLSError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NatsOptions:
    """Where the servers are and how to authenticate: user/password, token, nkey seed or a
    creds file, and TLS (a CA file, a client certificate). Short reconnect waits by default:
    a cluster's clients move to another server within a second."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkeys_seed: str | None = None
    user_credentials: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str | None = None
    connect_timeout: float = 2.0
    reconnect_time_wait: float = 0.25
    max_reconnect_attempts: int = -1
    #: How long a first connection may take before it fails; None: about
    #: ``connect_timeout`` per server (each tried once, ``reconnect_time_wait`` apart).
    initial_timeout: float | None = None

    @classmethod
    def of(cls, servers: str | Sequence[str], **options: Any) -> NatsOptions:
        listed = (servers,) if isinstance(servers, str) else tuple(servers)
        if not listed:
            raise ValueError("give at least one NATS server URL (nats://host:port)")
        expanded: list[str] = []
        for entry in listed:  # "nats://a:1,nats://b:2" is a list too
            expanded.extend(u.strip() for u in entry.split(",") if u.strip())
        return cls(servers=tuple(expanded), **options)

    @property
    def first_connect_timeout(self) -> float:
        """The bound of a first connection (``initial_timeout``, or its default)."""
        if self.initial_timeout is not None:
            return self.initial_timeout
        return len(self.servers) * (self.connect_timeout + self.reconnect_time_wait)

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    async def connect(self, **callbacks: Any) -> Client:
        """A connected nats-py client on the running loop.

        Fails fast on a refused authentication (nats-py would otherwise retry it
        forever with unlimited reconnects) and after ``first_connect_timeout`` seconds
        when no server answers.
        """
        client = Client()
        refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        tls_failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        user_error_cb = callbacks.pop("error_cb", None)

        async def on_error(exc: Exception) -> None:
            text = str(exc).lower()
            auth = "authorization" in text or "authentication" in text
            if auth and not client.is_connected and not refused.done():
                refused.set_result(exc)
            # A handshake that fails for want of a CA fails the same way on every retry.
            tls = isinstance(exc, ssl.SSLError)
            if tls and not client.is_connected and not tls_failed.done():
                tls_failed.set_result(exc)
            if user_error_cb is not None:
                await user_error_cb(exc)

        connecting = asyncio.ensure_future(
            client.connect(
                list(self.servers),
                user=self.user,
                password=self.password,
                token=self.token,
                nkeys_seed=self.nkeys_seed,
                user_credentials=self.user_credentials,
                tls=self.tls_context(),
                name=self.name,
                connect_timeout=self.connect_timeout,  # type: ignore[arg-type]
                reconnect_time_wait=self.reconnect_time_wait,  # type: ignore[arg-type]
                max_reconnect_attempts=self.max_reconnect_attempts,
                error_cb=on_error,
                **callbacks,
            )
        )
        waited: set[asyncio.Future[Any]] = {connecting, refused, tls_failed}
        done, _ = await asyncio.wait(
            waited, timeout=self.first_connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if connecting in done:
            connecting.result()
            return client
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        with contextlib.suppress(Exception):
            await client.close()
        servers = ", ".join(self.servers)
        if tls_failed.done():
            raise NatsTLSError(self.servers, tls_failed.result(), self.tls_ca)
        if refused.done():
            raise ConnectionRefusedError(
                f"NATS at {servers} refused the credentials ({refused.result()}); check the "
                "user/password, token, nkey or creds file given"
            )
        raise ConnectionError(
            f"no NATS server answered at {servers} within {self.first_connect_timeout:g} s; "
            "check "
            "the URLs and that the servers run"
        )


async def close_quietly(client: Client, *, drain: float = 0.0) -> None:
    """Close ``client`` whatever state its connection is in; never raises.

    With ``drain`` (seconds) a connected client first drains: subscriptions stop
    and what is pending is flushed. A client whose server has gone may raise from
    both (``ConnectionResetError``, ``BrokenPipeError``) or wait for a flush that
    never comes: a caller that is shutting down must still finish.
    """
    if client.is_closed:
        return
    if drain > 0 and client.is_connected:
        try:
            await asyncio.wait_for(client.drain(), drain)
        except Exception:  # TimeoutError among them
            log.debug("draining the NATS connection failed; closing it", exc_info=True)
        else:
            if client.is_closed:
                return
    try:
        await asyncio.wait_for(client.close(), max(drain, 1.0))
    except Exception:  # TimeoutError among them
        log.debug("closing the NATS connection failed (its server is gone)", exc_info=True)


class IOThread:
    """An asyncio loop on a daemon thread: where a client lives, so sync callers on any other
    thread (a projection manager, a notebook cell) can wait for its results."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    @property
    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the I/O loop and wait; never call this from the I/O thread itself."""
        if self.is_current:
            coro.close()
            raise RuntimeError(
                "a synchronous NATS call was made on the bus's own I/O thread (inside a "
                "callback of the bus), where it would wait for itself forever; call the "
                "async method instead"
            )
        return self.submit(coro).result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the I/O loop and await it from another loop (or this one)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.is_current:
            self._thread.join(5)
