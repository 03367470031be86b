"""Synchronous handlers run off the event loop, with the caller's context variables, in a
bounded pool; a slow one does not hold up the others."""

from __future__ import annotations

import asyncio
import contextvars
import statistics
import threading
import time

import pytest
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from eventstore.core.routing import Router
from eventstore.core.transport import InProcessTransport, RequestContext, Route

S = wrappers_pb2.StringValue
TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def test_a_sync_handler_runs_off_the_loop_with_the_callers_context() -> None:
    seen: dict[str, object] = {}

    def handler(msg: Message, ctx: RequestContext) -> Message:
        seen["thread"] = threading.current_thread().name
        seen["tenant"] = TENANT.get()
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()  # documented: no loop in a synchronous handler
        return S(value="ok")

    async def main() -> None:
        transport = InProcessTransport(Route("t.Sync", S, S, handler))
        TENANT.set("acme")
        assert (await transport.request("t.Sync", S())).unwrap(S).value == "ok"
        transport.router.close()

    asyncio.run(main())
    assert seen["tenant"] == "acme"
    assert str(seen["thread"]).startswith("eventstore-handler")


def test_handler_threads_zero_runs_sync_handlers_on_the_loop() -> None:
    seen: list[str] = []

    def handler(msg: Message, ctx: RequestContext) -> Message:
        seen.append(threading.current_thread().name)
        return S(value="ok")

    router = Router(handler_threads=0)
    router.register(Route("t.Sync", S, S, handler))
    asyncio.run(router.dispatch("t.Sync", S()))
    assert seen == [threading.main_thread().name]
    with pytest.raises(ValueError, match="handler_threads"):
        Router(handler_threads=-1)
    with pytest.raises(TypeError, match="handler_threads"):
        Router(handler_threads=True)


def test_a_slow_sync_handler_adds_at_most_5_ms_at_p95_to_other_requests() -> None:
    def slow(msg: Message, ctx: RequestContext) -> Message:
        time.sleep(0.05)
        return S(value="slow")

    async def fast(msg: Message, ctx: RequestContext) -> Message:
        await asyncio.sleep(0)
        return S(value="fast")

    async def p95(transport: InProcessTransport, with_slow: bool) -> float:
        slow_calls = (
            [asyncio.ensure_future(transport.request("t.Slow", S())) for _ in range(4)]
            if with_slow
            else []
        )
        await asyncio.sleep(0)

        async def timed() -> float:
            start = time.perf_counter()
            await transport.request("t.Fast", S())
            return time.perf_counter() - start

        times = await asyncio.gather(*(timed() for _ in range(200)))
        await asyncio.gather(*slow_calls)
        return statistics.quantiles(times, n=20)[-1]

    async def main() -> tuple[float, float]:
        transport = InProcessTransport(Route("t.Slow", S, S, slow), Route("t.Fast", S, S, fast))
        await p95(transport, False)  # warm up
        base = await p95(transport, False)
        loaded = await p95(transport, True)
        transport.router.close()
        return base, loaded

    base, loaded = asyncio.run(main())
    assert loaded - base <= 0.005, f"p95 {loaded * 1000:.2f} ms against {base * 1000:.2f} ms"
