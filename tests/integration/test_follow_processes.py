"""Following the log while another process and threads of this one append at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eventstore import NewEvent, new_event_id
from eventstore.sqlite import SQLiteEventStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KIND = "testbank.v1.MoneyDeposited"


def append_many(store: SQLiteEventStore, aggregate_id: str, commits: int) -> int:
    """``commits`` appends of 1 to 3 events each; returns how many events were stored."""
    stored = 0
    for i in range(commits):
        size = 1 + i % 3
        version = store.stream_version(aggregate_id)
        store.append(
            aggregate_id,
            "Account",
            version,
            [NewEvent(new_event_id(), KIND, b"") for _ in range(size)],
        )
        stored += size
    return stored


def test_follow_never_skips_or_repeats_with_writers_in_threads_and_another_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    commits_per_writer = 150
    expected = 4 * sum(1 + i % 3 for i in range(commits_per_writer))  # 3 threads + 1 process
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with SQLiteEventStore(path) as store, store.follow(0, poll_interval=0.02, page_size=5) as sub:
        child = subprocess.Popen(
            [sys.executable, __file__, str(path), "other", str(commits_per_writer)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            threads = [
                threading.Thread(target=append_many, args=(store, f"t{n}", commits_per_writer))
                for n in range(3)
            ]
            for t in threads:
                t.start()
            positions: list[int] = []
            deadline = time.monotonic() + 60
            while len(positions) < expected and time.monotonic() < deadline:
                positions.extend(e.position for e in sub.next_batch(timeout=0.5))
            for t in threads:
                t.join(10)
            _, err = child.communicate(timeout=30)
            assert child.returncode == 0, err
            positions.extend(e.position for e in sub.next_batch(timeout=0.3))
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        aggregates = {e.aggregate_id for e in store.read_all(0)}
    assert aggregates == {"t0", "t1", "t2", "other"}
    assert positions == list(range(1, expected + 1))


if __name__ == "__main__":
    with SQLiteEventStore(sys.argv[1]) as writer:
        append_many(writer, sys.argv[2], int(sys.argv[3]))
