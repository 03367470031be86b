"""Stop wins: a stop requested once a runner exists ends it, whenever it lands (decisions.md)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from eventstore.core.projections import ProjectionManager, projection
from eventstore.sqlite import SQLiteEventStore


def _manager(store: SQLiteEventStore) -> ProjectionManager:
    manager = ProjectionManager(store)
    manager.register(projection("noop")(lambda event, ctx: None))
    return manager


def test_a_stop_before_the_run_task_first_steps_ends_it_at_once(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store:
        manager = _manager(store)

        async def main() -> float:
            started = time.monotonic()
            task = asyncio.create_task(manager.run(poll_interval=30))
            manager.stop()  # before the task has run a single step
            await asyncio.wait_for(task, 5)
            return time.monotonic() - started

        assert asyncio.run(main()) < 1


def test_a_run_made_after_a_stop_runs_even_while_the_stopped_one_is_ending(
    db_path: Path,
) -> None:
    with SQLiteEventStore(db_path) as store:
        manager = _manager(store)

        async def main() -> tuple[bool, bool]:
            first = asyncio.create_task(manager.run(poll_interval=30))
            await asyncio.sleep(0.05)
            manager.stop()
            second = asyncio.create_task(manager.run(poll_interval=30))  # before first ended
            await asyncio.wait_for(first, 5)
            await asyncio.sleep(0.05)
            second_running = not second.done()
            manager.stop()
            await asyncio.wait_for(second, 5)
            return first.done(), second_running

        assert asyncio.run(main()) == (True, True)


def test_a_stop_with_no_run_does_not_end_a_later_run(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store:
        manager = _manager(store)
        manager.stop()

        async def main() -> bool:
            task = asyncio.create_task(manager.run(poll_interval=30))
            await asyncio.sleep(0.05)
            running = not task.done()
            manager.stop()
            await asyncio.wait_for(task, 5)
            return running

        assert asyncio.run(main())


def test_a_subscription_stopped_before_its_first_read_yields_nothing(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store:
        sub = store.follow(0, poll_interval=30)
        sub.stop()

        async def main() -> list[object]:
            return [event async for event in sub]

        started = time.monotonic()
        assert asyncio.run(main()) == []
        assert list(sub) == []
        assert time.monotonic() - started < 1
