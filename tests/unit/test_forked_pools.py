"""A forked child makes thread pools of its own: the Router's handler threads and the
group-commit writer thread of its parent do not exist in it (decisions 29 and 48)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from eventstore import NewEvent, new_event_id
from eventstore.core.routing import RequestContext, Route, Router
from eventstore.sqlite import SQLiteEventStore

S = wrappers_pb2.StringValue


def _in_forked_child(call: Callable[[], object], timeout: float = 10.0) -> object:
    """``call()``'s answer in a forked child (``repr`` of what it raised)."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        try:
            send.send(call())
        except BaseException as exc:
            send.send(f"raised {exc!r}")

    process = context.Process(target=child)
    process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            return f"no answer in {timeout:g} s"
        return receive.recv()
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        receive.close()


def test_a_forked_child_runs_synchronous_handlers_on_threads_of_its_own():
    def handler(message: Message, ctx: RequestContext) -> Message:
        return S(value=threading.current_thread().name)

    router = Router()
    router.register(Route("t.Where", S, S, handler))

    def where() -> str:
        async def call() -> str:
            reply = await asyncio.wait_for(router.dispatch("t.Where", S()), 5)
            return reply.unwrap(S).value

        try:
            return asyncio.run(call())
        except asyncio.TimeoutError:
            return "the handler never ran"

    assert where().startswith("eventstore-handler")  # the parent's pool exists now
    assert str(_in_forked_child(where)).startswith("eventstore-handler")
    router.close()


def test_a_forked_child_writes_async_appends_with_a_writer_thread_of_its_own():
    def append(aggregate_id: str) -> object:
        async def call() -> object:
            event = NewEvent(new_event_id(), "t.E", b"")
            result = await asyncio.wait_for(store.append_async(aggregate_id, "A", 0, [event]), 5)
            return result.events[0].position

        try:
            return asyncio.run(call())
        except asyncio.TimeoutError:
            return "no answer: the writer thread never ran"

    # In memory: the child's copy of the database is its own (a file's locks are not).
    with SQLiteEventStore(":memory:") as store:
        assert append("parent") == 1  # the parent's writer pool has its thread now
        assert _in_forked_child(lambda: (append("child"), store.count_events())) == (2, 2)
        assert store.count_events() == 1
