"""The service edge: middleware and OpenTelemetry overhead per command, HTTP round trip.

- In process at FULL (fsync per commit), one client: a deposit command through
  ``InProcessTransport`` with ``default_middlewares(network=False)``, against
  the same transport with no middlewares (baseline), measured in interleaved
  rounds. Then the same plus ``otel_middleware()`` on the OpenTelemetry API's
  no-op provider (the target: < 15 % over the baseline), and on the SDK with
  an in-memory exporter (reported beside it).
- HTTP: a unary Connect call (JSON) to ``ConnectApp`` on uvicorn (API-key
  authentication and the network default chain, an echo handler: the gateway's
  own cost) against a bare ASGI echo app on the same uvicorn; p50 of keep-alive
  requests from one client. Target: <= 2x.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._progress import quick_requested, step
from .common import Figure


def _in_process(quick: bool) -> list[Figure]:
    from eventstore.core.routing import RequestContext, Route
    from eventstore.core.transport import InProcessTransport
    from eventstore.middleware import default_middlewares
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import account_repository
    from tests.support.edge import pb

    commands = 60 if quick else 300
    rounds = 2 if quick else 5

    def chain(kind: str) -> list[Any]:
        if kind == "none":
            return []
        out = default_middlewares(network=False)
        if kind == "otel-noop":
            from eventstore.otel import otel_middleware

            out = [otel_middleware(), *out]
        elif kind == "otel-sdk":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )

            from eventstore.otel import otel_middleware

            tracer = TracerProvider()
            tracer.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
            meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
            out = [otel_middleware(tracer, meter), *out]
        return out

    def measure(kind: str, folder: str, round_: int) -> float:
        from eventstore.core import instrumentation

        for hook in instrumentation.installed():
            instrumentation.uninstall(hook)
        with SQLiteEventStore(Path(folder) / f"{kind}-{round_}.db", synchronous="FULL") as store:
            repo = account_repository(store)
            account = repo.factory("acc-1")
            account.open("o")
            repo.save(account)

            async def deposit(message: Any, ctx: RequestContext) -> Any:
                result = await repo.retry_on_conflict_async(
                    "acc-1", lambda a: a.deposit(1), command_id=ctx.command_id
                )
                return pb.Opened(version=result.version)

            transport = InProcessTransport(
                Route("edge.v1.Accounts.Deposit", pb.Deposit, pb.Opened, deposit),
                middlewares=chain(kind),
            )

            async def go() -> float:
                start = time.perf_counter()
                for _ in range(commands):
                    reply = await transport.request(
                        "edge.v1.Accounts.Deposit", pb.Deposit(amount=1)
                    )
                    assert reply.success, reply.error
                return (time.perf_counter() - start) / commands

            return asyncio.run(go())

    kinds = ["none", "default", "otel-noop", "otel-sdk"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(rounds):
            for kind in kinds:
                step("edge", f"in process round {r + 1}/{rounds}: {kind}")
                times[kind].append(measure(kind, folder, r))
    best = {k: min(v) * 1e6 for k, v in times.items()}
    base = best["none"]

    def overhead(kind: str) -> bool:
        return best[kind] < base * 1.15

    return [
        Figure(
            "edge",
            "command at FULL, default_middlewares(network=False)",
            best["default"],
            "µs",
            "no middlewares",
            base,
            higher_is_better=False,
            target_text="< 15% over",
            meets_target=overhead("default"),
        ),
        Figure(
            "edge",
            "command at FULL, + otel_middleware (API no-op provider)",
            best["otel-noop"],
            "µs",
            "no middlewares",
            base,
            higher_is_better=False,
            target_text="< 15% over",
            meets_target=overhead("otel-noop"),
        ),
        Figure(
            "edge",
            "command at FULL, + otel_middleware (SDK, in-memory export)",
            best["otel-sdk"],
            "µs",
            "no middlewares",
            base,
            higher_is_better=False,
        ),
    ]


class _Server:
    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _http(quick: bool) -> list[Figure]:
    import httpx

    from eventstore.auth import Principal, api_key_authenticator, hash_api_key
    from eventstore.core.routing import RequestContext, Route
    from eventstore.rpc import ConnectApp
    from tests.support.edge import pb

    requests = 200 if quick else 1000

    def echo(message: Any, ctx: RequestContext) -> Any:
        return pb.Opened(account_id=message.account_id)

    app = ConnectApp(
        Route("edge.v1.Accounts.Open", pb.Open, pb.Opened, echo),
        authenticate=api_key_authenticator({hash_api_key("k"): Principal("bench")}),
        handler_threads=0,
    )
    body = b'{"accountId": "acc-1"}'
    headers = {"Content-Type": "application/json", "X-Api-Key": "k"}

    def p50(port: int, path: str) -> float:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(20):
                client.post(path, content=body, headers=headers)
            samples = []
            for _ in range(requests):
                start = time.perf_counter()
                reply = client.post(path, content=body, headers=headers)
                samples.append(time.perf_counter() - start)
                assert reply.status_code == 200, reply.text
        return statistics.median(samples) * 1e6

    step("edge", "HTTP: bare ASGI echo")
    with _Server(_echo) as bare:
        base = p50(bare.port, "/echo")
    step("edge", "HTTP: ConnectApp")
    with _Server(app) as served:
        ours = p50(served.port, "/edge.v1.Accounts/Open")
    return [
        Figure(
            "edge",
            "HTTP unary round trip p50 (ConnectApp, API key, network chain)",
            ours,
            "µs",
            "bare ASGI echo, same uvicorn",
            base,
            higher_is_better=False,
            target_text="<= 2x",
            meets_target=ours <= 2 * base,
        )
    ]


def run(quick: bool = False) -> list[Figure]:
    quick = quick or quick_requested()
    return _in_process(quick) + _http(quick)
