"""OffLoopCalls: synchronous calls for async callers, off the loop, many per thread hand-off."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from eventstore.core.offloop import ANSWER_EVERY, OffLoopCalls

_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def test_calls_run_off_the_loop_in_order_with_the_callers_context():
    calls = OffLoopCalls()
    seen: list[tuple[int, str, bool]] = []

    def work(n: int) -> int:
        seen.append((n, _tenant.get(), threading.current_thread() is threading.main_thread()))
        return n * 2

    async def one(n: int) -> int:
        _tenant.set(f"t{n}")
        return await calls.call(work, n)

    async def main() -> list[int]:
        return await asyncio.gather(*(one(n) for n in range(3 * ANSWER_EVERY)))

    results = asyncio.run(main())
    assert results == [n * 2 for n in range(3 * ANSWER_EVERY)]
    assert sorted(seen) == [(n, f"t{n}", False) for n in range(3 * ANSWER_EVERY)]


def test_an_exception_reaches_its_caller_only():
    calls = OffLoopCalls()

    def work(n: int) -> int:
        if n == 3:
            raise KeyError(f"no {n}")
        return n

    async def main() -> list[object]:
        calls_made = (calls.call(work, n) for n in range(6))
        return await asyncio.gather(*calls_made, return_exceptions=True)

    results = asyncio.run(main())
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
    assert isinstance(results[3], KeyError)


def test_stop_iteration_becomes_a_runtime_error_instead_of_hanging():
    calls = OffLoopCalls()

    def work() -> None:
        raise StopIteration

    async def main() -> None:
        await calls.call(work)

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(main())


def test_a_call_cancelled_before_it_runs_is_skipped():
    calls = OffLoopCalls(workers=1)
    gate = threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        gate.wait(10)
        ran.append("blocker")

    def never() -> None:
        ran.append("never")

    async def main() -> None:
        first = asyncio.ensure_future(calls.call(blocker))
        await asyncio.sleep(0)  # the blocker's job starts
        second = asyncio.ensure_future(calls.call(never))
        await asyncio.sleep(0)
        second.cancel()
        await asyncio.sleep(0)
        gate.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second

    asyncio.run(main())
    assert ran == ["blocker"]


def test_calls_run_on_the_shared_pool_even_when_the_loops_executor_is_shut_down():
    calls = OffLoopCalls()

    async def main() -> str:
        await asyncio.get_running_loop().shutdown_default_executor()
        return await calls.call(lambda: threading.current_thread().name)

    assert asyncio.run(main()).startswith("eventstore-offloop")


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be 1 or more"):
        OffLoopCalls(workers=0)


def test_load_async_of_many_clients_answers_each_its_own_aggregate(db_path):
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import Account, account_repository

    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store)
        for n in range(40):
            account = Account(f"acc-{n}")
            account.open("o", n)
            repo.save(account)

        async def main() -> list[int]:
            loaded = await asyncio.gather(*(repo.load_async(f"acc-{n}") for n in range(40)))
            return [a.state.balance for a in loaded]

        assert asyncio.run(main()) == list(range(40))


def test_a_repository_loads_on_as_many_threads_as_its_store_says():
    from eventstore.core.offloop import DEFAULT_WORKERS
    from eventstore.postgres import PostgresEventStore
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import account_repository

    class Says:  # only the hint matters here: the repository reads it when made
        load_threads = 3

    class SaysNothing:
        pass

    class SaysNonsense:
        load_threads = 0

    # SQLite: a load holds the GIL for most of its time, so one thread; PostgreSQL waits
    # on its server, so several.
    assert SQLiteEventStore.load_threads == 1
    assert PostgresEventStore.load_threads == DEFAULT_WORKERS
    with SQLiteEventStore(":memory:") as store:
        assert account_repository(store)._off_loop.workers == 1
    assert account_repository(Says())._off_loop.workers == 3  # type: ignore[arg-type]
    assert account_repository(SaysNothing())._off_loop.workers == DEFAULT_WORKERS  # type: ignore[arg-type]
    assert account_repository(SaysNonsense())._off_loop.workers == DEFAULT_WORKERS  # type: ignore[arg-type]
