"""Closing a store while other threads use it: no crash, only ``StoreClosedError``.

A crash kills the process, so each run is a subprocess of its own (slow; marked
``slow``): it opens the store, starts readers, closes the store under them and
reports every exception the readers saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from eventstore import NewEvent, StoreClosedError, new_event_id
from eventstore.sqlite import SQLiteEventStore, SQLiteReadModel

ROOT = Path(__file__).resolve().parents[2]
RUNS = 100
PARALLEL = 2
BUDGET_SECONDS = 90.0

CLOSE_UNDER_READERS = textwrap.dedent(
    """
    import json, sys, threading, time
    from eventstore import StoreClosedError
    from eventstore.sqlite import SQLiteEventStore, SQLiteReadModel

    path, scenario = sys.argv[1], sys.argv[2]
    store = SQLiteEventStore(path)
    seen, started = [], threading.Barrier(1 + (8 if scenario == "stream_version" else 1))
    lock = threading.Lock()

    def loop(call):
        started.wait(10)
        try:
            while True:
                call()
        except Exception as exc:  # every one is reported, the right one and the wrong ones
            with lock:
                seen.append(type(exc).__name__)

    def iterate_follow():
        with store.follow(poll_interval=0.001) as subscription:
            for _ in subscription:
                pass
        raise AssertionError("follow() ended without an error")

    calls = {
        "stream_version": lambda: store.stream_version("acc-1"),
        "read_all": lambda: store.read_all(),
        "iter_all": lambda: sum(1 for _ in store.iter_all(page_size=100)),
        "follow": iterate_follow,
    }
    count = 8 if scenario == "stream_version" else 1
    threads = [threading.Thread(target=loop, args=(calls[scenario],)) for _ in range(count)]
    for t in threads:
        t.start()
    started.wait(10)
    time.sleep(0.005)
    store.close()
    for t in threads:
        t.join(10)
    print(json.dumps({"seen": seen, "alive": sum(t.is_alive() for t in threads)}))
    """
)

SCENARIOS = ("stream_version", "read_all", "iter_all", "follow")


@pytest.fixture(scope="module")
def store_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("close") / "events.db"
    with SQLiteEventStore(path, synchronous="OFF") as store:
        events = [NewEvent(new_event_id(), "Deposited", b"x" * 100) for _ in range(2000)]
        store.append("acc-1", "Account", 0, events)
    return path


@pytest.mark.slow
def test_closing_under_reading_threads_never_crashes_and_readers_get_store_closed(store_file):
    started = time.monotonic()
    pending = [SCENARIOS[i % len(SCENARIOS)] for i in range(RUNS)]
    running: list[tuple[str, subprocess.Popen[str]]] = []
    results: list[tuple[str, int, str, str]] = []
    try:
        while pending or running:
            assert time.monotonic() - started < BUDGET_SECONDS, f"{len(results)} runs done"
            while pending and len(running) < PARALLEL:
                scenario = pending.pop()
                process = subprocess.Popen(
                    [sys.executable, "-c", CLOSE_UNDER_READERS, str(store_file), scenario],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                running.append((scenario, process))
            scenario, process = running.pop(0)
            out, err = process.communicate(timeout=30)
            results.append((scenario, process.returncode, out, err))
    finally:
        for _, process in running:
            process.kill()
            process.wait()
    for scenario, code, out, err in results:
        assert code == 0, f"{scenario}: exit code {code} (negative is a signal)\n{err}"
        report = json.loads(out)
        readers = 8 if scenario == "stream_version" else 1
        assert report == {"seen": ["StoreClosedError"] * readers, "alive": 0}, scenario


def test_calls_after_close_get_store_closed_not_a_sqlite_error(store_file, tmp_path):
    store = SQLiteEventStore(store_file)
    store.stream_version("acc-1")  # this thread now has a reader connection
    store.close()
    for call in (
        lambda: store.stream_version("acc-1"),
        lambda: store.read_all(),
        lambda: store.append("acc-2", "Account", 0, [NewEvent(new_event_id(), "E", b"")]),
        lambda: store.load_checkpoint("p"),
    ):
        with pytest.raises(StoreClosedError):
            call()


def test_a_write_waiting_for_the_lock_during_close_gets_store_closed(store_file):
    store = SQLiteEventStore(store_file)
    errors: list[BaseException] = []
    entered = threading.Event()

    def write() -> None:
        entered.wait(10)
        try:
            store.append("acc-3", "Account", 0, [NewEvent(new_event_id(), "E", b"")])
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    with store._db.write_lock:  # hold the write lock: the append waits behind close()
        entered.set()
        time.sleep(0.05)
        closing = threading.Thread(target=store.close)
        closing.start()
        time.sleep(0.05)
    closing.join(10)
    writer.join(10)
    assert [type(e) for e in errors] == [StoreClosedError]


def test_a_thread_closing_the_store_inside_its_own_read_does_not_wait(store_file):
    store = SQLiteEventStore(store_file)
    began = time.monotonic()
    with pytest.raises(StoreClosedError), SQLiteReadModel(store).reading() as conn:
        conn.execute("SELECT 1")
        store.close()
        store.stream_version("acc-1")
    assert time.monotonic() - began < 1.0


def test_close_interrupts_a_long_read_in_flight_which_gets_store_closed(store_file):
    store = SQLiteEventStore(store_file)
    model = SQLiteReadModel(store)
    errors: list[BaseException] = []
    reading = threading.Event()
    endless = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000000000) "
        "SELECT COUNT(*) FROM n"
    )

    def read() -> None:
        reading.set()
        try:
            model.query(endless)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    reading.wait(10)
    time.sleep(0.05)  # inside SQLite now
    began = time.monotonic()
    store.close()
    reader.join(10)
    assert time.monotonic() - began < 2.0, "close() interrupted the read instead of waiting"
    assert [type(e) for e in errors] == [StoreClosedError]
