"""Closing a store wakes what follows it: a waiting ``for`` or ``async for`` ends with
``StoreClosedError`` at once, not after its ``poll_interval``."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from eventstore import NewEvent, StoreClosedError, new_event_id
from eventstore.sqlite import SQLiteEventStore

#: Far longer than any wait the test allows: a follower that waited it out fails the test.
POLL = 30.0


def _follow_in_thread(store: SQLiteEventStore) -> tuple[threading.Thread, dict[str, object]]:
    ended: dict[str, object] = {}
    started = threading.Event()

    def follower() -> None:
        try:
            with store.follow(0, poll_interval=POLL) as sub:
                started.set()
                for _event in sub:
                    pass
            ended["how"] = "iteration ended"
        except Exception as exc:
            ended["how"] = exc
        ended["at"] = time.monotonic()

    thread = threading.Thread(target=follower)
    thread.start()
    assert started.wait(5)
    return thread, ended


@pytest.mark.parametrize("where", ["file", "memory"])
def test_close_ends_a_waiting_follower_at_once_with_store_closed_error(
    tmp_path: Path, where: str
) -> None:
    store = SQLiteEventStore(tmp_path / "f.db" if where == "file" else ":memory:")
    store.append("a", "Account", 0, [NewEvent(new_event_id(), "t.E", b"")])
    thread, ended = _follow_in_thread(store)
    time.sleep(0.3)  # the follower has read the event and waits for the next commit
    closed = time.monotonic()
    store.close()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(ended["how"], StoreClosedError), ended
    assert float(ended["at"]) - closed < 2.0  # type: ignore[arg-type]


def test_close_ends_a_waiting_async_follower_at_once(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "f.db")

    async def main() -> float:
        sub = store.follow(0, poll_interval=POLL)

        async def follow() -> None:
            async for _event in sub:
                pass

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        closed = time.monotonic()
        await asyncio.to_thread(store.close)
        with pytest.raises(StoreClosedError):
            await asyncio.wait_for(task, 5)
        return time.monotonic() - closed

    assert asyncio.run(main()) < 2.0


def test_close_calls_no_other_commit_listener(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "f.db")
    heard: list[int] = []
    store.add_commit_listener(heard.append)
    store.append("a", "Account", 0, [NewEvent(new_event_id(), "t.E", b"")])
    store.close()
    assert heard == [1]  # the commit, and nothing for the close: nothing was committed
