"""``eventstore serve``: a service host, a relay and a projection runner for one module.

``eventstore serve MODULE --store URL --nats URL|--embedded`` opens the store
(``open_store``), imports ``MODULE`` (``package.module``, or
``package.module:function``) and serves what its ``services(store)`` returns
(the generated ``<Service>Server`` bindings) over NATS with a
``NatsServiceHost``. With ``--relay`` (the default) a ``Relay`` publishes the
store's log to the bus; with ``--projections`` (the default) the projections
the module's ``projections(store)`` returns (a ``Projection``, or a
``(projection, read_model)`` pair) are fed from the bus. ``middlewares(store)``,
when the module has it, gives the host's middlewares, and ``authenticate(store)``
its ``authenticate(headers) -> Principal | None`` hook (without one the
command needs ``--allow-anonymous``). ``--http PORT`` also serves the same
bindings, chain and hook over HTTP (``ConnectApp`` on uvicorn, 127.0.0.1
unless ``--http-host``) beside the NATS host. SIGINT and SIGTERM stop
everything in order: the host stops taking requests and finishes those in
flight, the projections and the relay stop, the store closes.

This module sits above the adapters, like ``stores``: it imports the NATS
adapter only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .core.errors import EventStoreError

log = logging.getLogger("eventstore.serve")


@dataclass
class ServeOptions:
    """What ``eventstore serve`` was asked to run."""

    module: str
    store: str
    nats: list[str] = field(default_factory=list)
    embedded: bool = False
    relay: bool = True
    projections: bool = True
    max_in_flight: int = 64
    version: str = "1.0.0"
    allow_anonymous: bool = False
    #: Serve the same bindings over HTTP (Connect) on this port too (0: a free one).
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    #: ``NatsOptions`` keywords (user, password, token, user_credentials, tls_ca, ...).
    connect: dict[str, Any] = field(default_factory=dict)


def load_factory(spec: str, default: str = "services") -> tuple[Any, Callable[..., Any]]:
    """The module ``spec`` names and its factory (``module:function``, else ``default``)."""
    name, _, attr = spec.partition(":")
    # As `python -m` does: a module in the folder the command runs from is found (the
    # console script's sys.path holds only its own folder and the environment's).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise SystemExit(
            f"eventstore serve: cannot import module {name!r}: {exc}. Give an importable "
            "module (run from the folder its package is in, or set PYTHONPATH)."
        ) from exc
    factory = getattr(module, attr or default, None)
    if not callable(factory):
        raise SystemExit(
            f"eventstore serve: module {name!r} has no function {attr or default!r}. Define "
            f"`def {attr or default}(store)` returning the generated <Service>Server bindings "
            "to serve."
        )
    return module, factory


async def serve(options: ServeOptions, ready: Callable[[str], None] | None = None) -> None:
    """Run until cancelled or signalled; ``ready(url)`` is called once requests are served."""
    from .nats import EmbeddedNATS, NatsServiceHost
    from .stores import open_store

    module, factory = load_factory(options.module)
    try:
        store = open_store(options.store)
    except (EventStoreError, OSError) as exc:  # a bad URL, a missing folder, a foreign file
        raise SystemExit(f"eventstore serve: {exc}") from exc
    embedded: Any = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, or a thread
            loop.add_signal_handler(sig, stop.set)
    background: list[asyncio.Future[Any]] = []
    stoppers: list[Callable[[], Any]] = []  # sync: end the background runs
    closers: list[Callable[[], Any]] = []  # async, after the runs ended
    try:
        if options.embedded:
            embedded = EmbeddedNATS()
            embedded.start()
            servers = [embedded.url]
        else:
            servers = list(options.nats)
        bindings = list(factory(store))
        if not bindings:
            raise SystemExit(
                f"eventstore serve: {options.module}'s {factory.__name__}(store) returned no "
                "service to serve. Return the generated <Service>Server bindings from it "
                "(e.g. [AccountServer(handlers)])."
            )
        make_middlewares = getattr(module, "middlewares", None)
        middlewares = list(make_middlewares(store)) if make_middlewares is not None else None
        make_authenticate = getattr(module, "authenticate", None)
        authenticate = make_authenticate(store) if make_authenticate is not None else None
        if authenticate is None and not options.allow_anonymous:
            raise SystemExit(
                f"eventstore serve: {options.module} has no authenticate(store) hook; define "
                "one (e.g. returning eventstore.auth.jwt_authenticator(...)) or pass "
                "--allow-anonymous to serve callers without credentials"
            )
        try:
            host = NatsServiceHost(
                servers,
                *bindings,
                middlewares=middlewares,
                authenticate=authenticate,
                allow_anonymous=options.allow_anonymous,
                max_in_flight=options.max_in_flight,
                version=options.version,
                **options.connect,
            )
        except ValueError as exc:  # a bad --max-in-flight or --service-version
            raise SystemExit(f"eventstore serve: {exc}") from exc
        async with contextlib.AsyncExitStack() as running:
            # Only starting is guarded: an error while serving keeps its traceback.
            try:
                await running.enter_async_context(host)
            except OSError as exc:  # no NATS server answered at the URLs
                raise SystemExit(f"eventstore serve: {exc}") from exc
            if options.relay or options.projections:
                await _start_bus_side(
                    module, store, servers, options, background, stoppers, closers
                )
            if options.http_port is not None:
                await _start_http(
                    module, store, bindings, authenticate, options, background, stoppers
                )
            if ready is not None:
                ready(servers[0])
            await stop.wait()
        log.info("service host stopped")
    finally:
        for stopper in stoppers:
            stopper()
        if background:
            _, pending = await asyncio.wait(background, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        for closer in reversed(closers):
            result = closer()
            if inspect.isawaitable(result):
                await result
        close = getattr(store, "close", None)
        if close is not None:
            close()
        if embedded is not None:
            embedded.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _start_http(
    module: Any,
    store: Any,
    bindings: list[Any],
    authenticate: Any,
    options: ServeOptions,
    background: list[asyncio.Future[Any]],
    stoppers: list[Callable[[], Any]],
) -> None:
    """``ConnectApp`` on uvicorn beside the NATS host: the same bindings, chain and hook."""
    from .rpc import ConnectApp, serve_http

    make_middlewares = getattr(module, "middlewares", None)
    app = ConnectApp(
        *bindings,
        middlewares=list(make_middlewares(store)) if make_middlewares is not None else None,
        authenticate=authenticate,
        allow_anonymous=options.allow_anonymous,
    )
    server = serve_http(app, host=options.http_host, port=options.http_port or 0)
    background.append(asyncio.ensure_future(server.serve()))

    def stop_http() -> None:
        server.should_exit = True
        app.router.close()

    stoppers.append(stop_http)
    while not server.started:
        if background[-1].done():
            background[-1].result()  # raises why uvicorn could not start
            raise SystemExit("eventstore serve: the HTTP server stopped while starting")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    log.info("serving %s over HTTP on http://%s:%d", options.module, options.http_host, port)
    options.http_port = port


async def _start_bus_side(
    module: Any,
    store: Any,
    servers: list[str],
    options: ServeOptions,
    background: list[asyncio.Future[Any]],
    stoppers: list[Callable[[], Any]],
    closers: list[Callable[[], Any]],
) -> None:
    from . import nats as nats_adapter

    bus_type = getattr(nats_adapter, "NatsEventBus", None)
    relay_type = getattr(nats_adapter, "Relay", None)
    if bus_type is None or (options.relay and relay_type is None):
        raise SystemExit(
            "eventstore serve: this build's eventstore.nats has no NatsEventBus/Relay; "
            "pass --no-relay --no-projections to serve requests only"
        )
    bus = bus_type(servers, store=store, **options.connect)
    try:
        await bus.__aenter__()
    except OSError as exc:  # the bus could not connect
        raise SystemExit(f"eventstore serve: {exc}") from exc
    closers.append(lambda: bus.__aexit__(None, None, None))
    if options.relay:
        relay = relay_type(store, bus)  # type: ignore[misc]
        background.append(asyncio.ensure_future(relay.run()))
        stoppers.append(relay.stop)
    if options.projections:
        make = getattr(module, "projections", None)
        if make is None:
            log.info("%s has no projections(store): no projection runs", options.module)
            return
        from .core.projections import ProjectionManager

        manager = ProjectionManager(bus)
        for item in make(store):
            projection, read_model = item if isinstance(item, tuple) else (item, None)
            manager.register(projection, read_model=read_model)
            if read_model is not None and hasattr(read_model, "close"):
                closers.append(read_model.close)
        background.append(asyncio.ensure_future(manager.run()))
        stoppers.append(manager.stop)


def main(args: Any) -> int:
    """The ``serve`` subcommand (arguments parsed by ``eventstore.cli``)."""
    if not args.embedded and not args.nats:
        print("eventstore serve: give --nats URL (repeatable) or --embedded", file=sys.stderr)
        return 2
    if args.embedded and args.nats:
        print("eventstore serve: give --nats URL or --embedded, not both", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = ServeOptions(
        module=args.module,
        store=args.store,
        nats=list(args.nats or []),
        embedded=args.embedded,
        relay=args.relay,
        projections=args.projections,
        max_in_flight=args.max_in_flight,
        version=args.service_version,
        allow_anonymous=args.allow_anonymous,
        http_port=args.http,
        http_host=args.http_host,
        connect={
            key: value
            for key, value in (
                ("user", args.user),
                ("password", args.password),
                ("token", args.token),
                ("user_credentials", args.creds),
                ("tls_ca", args.tls_ca),
            )
            if value
        },
    )

    def ready(url: str) -> None:
        print(f"eventstore serve: serving {options.module} on {url}", flush=True)
        if options.http_port is not None:
            print(
                f"eventstore serve: serving {options.module} over HTTP on "
                f"http://{options.http_host}:{options.http_port}",
                flush=True,
            )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(options, ready))
    return 0


def add_parser(commands: Any) -> None:
    """Add ``serve`` to the ``eventstore`` command's subcommands."""
    srv = commands.add_parser(
        "serve",
        help="serve a module's services over NATS (with a relay and projections)",
        description=(
            "Serve MODULE's services(store) over NATS request-reply; with --relay publish the "
            "store's log to the bus, with --projections feed MODULE's projections(store) from it."
        ),
    )
    srv.add_argument("module", metavar="MODULE", help="package.module[:function]")
    srv.add_argument("--store", required=True, metavar="URL", help="event store URL")
    srv.add_argument(
        "--nats", action="append", metavar="URL", help="NATS server URL (repeat for a cluster)"
    )
    srv.add_argument(
        "--embedded", action="store_true", help="start an embedded nats-server on 127.0.0.1"
    )
    srv.add_argument(
        "--relay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish the store's log to the bus (default: on)",
    )
    srv.add_argument(
        "--projections",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="feed MODULE's projections(store) from the bus (default: on)",
    )
    srv.add_argument("--max-in-flight", type=int, default=64, metavar="N")
    srv.add_argument("--user", help="NATS user (with --password)")
    srv.add_argument("--password", help="NATS password")
    srv.add_argument("--token", help="NATS token")
    srv.add_argument("--creds", metavar="FILE", help="NATS credentials file (JWT and nkey)")
    srv.add_argument("--tls-ca", metavar="FILE", help="CA file to verify the NATS servers")
    srv.add_argument("--service-version", default="1.0.0", metavar="SEMVER")
    srv.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve callers without credentials (when MODULE has no authenticate(store))",
    )
    srv.add_argument(
        "--http",
        type=int,
        metavar="PORT",
        help="also serve the services over HTTP (Connect) on PORT, beside the NATS host",
    )
    srv.add_argument("--http-host", default="127.0.0.1", metavar="HOST")


__all__ = ["ServeOptions", "add_parser", "load_factory", "main", "serve"]
