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
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from nats.aio.client import Client

from .errors import BusLoopStoppedError, NatsTLSError, NatsUrlError

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
        """Options for ``servers``: a URL, a comma-separated list or a list of URLs, each
        checked here (an empty or malformed one raises ``NatsUrlError``, a ``ValueError``,
        instead of hanging or failing inside nats-py at the first connection)."""
        listed = (servers,) if isinstance(servers, str) else tuple(servers)
        expanded: list[str] = []
        for entry in listed:  # "nats://a:1,nats://b:2" is a list too
            expanded.extend(u.strip() for u in str(entry).split(",") if u.strip())
        if not expanded:
            # nats-py given no server loops for ever without awaiting (100% CPU).
            raise NatsUrlError(servers if isinstance(servers, str) else list(listed))
        for url in expanded:
            check_server_url(url)
        if len({_is_websocket(url) for url in expanded}) > 1:
            raise NatsUrlError(
                ", ".join(expanded),
                "it mixes websocket (ws://, wss://) and plain (nats://, tls://) servers, "
                "which one connection cannot use together",
            )
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


_SCHEMES = ("nats", "tls", "ws", "wss")


def _is_websocket(url: str) -> bool:
    return url.lower().startswith(("ws://", "wss://"))


def check_server_url(url: str) -> None:
    """Raise ``NatsUrlError`` unless nats-py can dial ``url`` (``nats://host:port``,
    ``tls://``, ``ws://``, ``wss://``, or ``host:port`` / ``host`` as nats-py allows)."""
    scheme, has_scheme, _ = url.partition("://")
    if has_scheme and scheme.lower() not in _SCHEMES:
        raise NatsUrlError(url, f"its scheme {scheme!r} is not one of {', '.join(_SCHEMES)}")
    if any(c.isspace() for c in url):
        raise NatsUrlError(url, "it holds a space")
    try:
        parsed = urlsplit(url if has_scheme else f"nats://{url}")
        port = parsed.port  # raises ValueError for a port that is not a number 0-65535
    except ValueError:
        raise NatsUrlError(url, "its port is not a number from 0 to 65535") from None
    if not parsed.hostname:
        raise NatsUrlError(url, "it names no host")
    del port  # None: nats-py dials its default port, 4222


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
    thread (a projection manager, a notebook cell) can wait for its results.

    The loop runs until ``stop()``: a ``SystemExit`` or ``KeyboardInterrupt`` escaping a
    task or callback on it (a handler's ``sys.exit``) is logged and the loop goes on, since
    every client of the thread would otherwise wait for ever. If the thread ends anyway,
    every wait on it fails at once with ``BusLoopStoppedError`` instead of hanging.
    """

    #: How often a waiting caller checks that the thread still runs.
    _CHECK_EVERY = 0.5

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._stop_requested = False
        self._ended_by: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            while True:
                try:
                    self.loop.run_forever()
                except (SystemExit, KeyboardInterrupt) as exc:  # escaped a task or callback
                    if self._stop_requested:
                        break
                    log.error(
                        "%s raised on the NATS I/O thread %r (by a handler or callback running "
                        "there); the thread goes on",
                        type(exc).__name__,
                        self.name,
                        exc_info=exc,
                    )
                    continue
                break
        except BaseException as exc:  # the loop itself broke: every waiter hears of it
            self._ended_by = exc
            log.error("the NATS I/O thread %r stopped", self.name, exc_info=exc)
        finally:
            self._stop_requested = True
            try:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except BaseException:  # best effort on the way out
                log.debug("cancelling the tasks of %r failed", self.name, exc_info=True)
            finally:
                self.loop.close()

    @property
    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    @property
    def is_alive(self) -> bool:
        """True while the thread runs its loop (False once stopped, or if it died)."""
        return self._thread.is_alive() and not self.loop.is_closed()

    def _dead(self) -> BusLoopStoppedError:
        return BusLoopStoppedError(self.name, self._ended_by)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if not self.is_alive or self._stop_requested:
            coro.close()
            raise self._dead()
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop closed meanwhile
            coro.close()
            raise self._dead() from None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the I/O loop and wait; never call this from the I/O thread itself."""
        if self.is_current:
            coro.close()
            raise RuntimeError(
                "a synchronous NATS call was made on the bus's own I/O thread (inside a "
                "callback of the bus), where it would wait for itself forever; call the "
                "async method instead"
            )
        future = self.submit(coro)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self._CHECK_EVERY
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            try:
                return future.result(wait)
            except concurrent.futures.TimeoutError:
                if future.done():
                    raise  # the coroutine's own TimeoutError, not this wait's
                if not self._thread.is_alive():
                    future.cancel()
                    raise self._dead() from None
                if deadline is not None and time.monotonic() >= deadline:
                    future.cancel()
                    raise
            except concurrent.futures.CancelledError:
                if not self._thread.is_alive() or self._stop_requested:
                    raise self._dead() from None
                raise

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the I/O loop and await it from another loop (or this one)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return await coro
        future = asyncio.wrap_future(self.submit(coro))
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=self._CHECK_EVERY)
                if done:
                    break
                if not self._thread.is_alive():
                    future.cancel()
                    raise self._dead()
        except asyncio.CancelledError:
            future.cancel()  # the caller gave up: so does the coroutine on the I/O loop
            raise
        if future.cancelled() and (not self._thread.is_alive() or self._stop_requested):
            raise self._dead()
        return future.result()

    def stop(self) -> None:
        self._stop_requested = True
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.is_current:
            self._thread.join(5)
