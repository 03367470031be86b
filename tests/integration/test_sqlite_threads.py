"""Several threads in one process writing and reading one SQLite store."""

from __future__ import annotations

import gc
import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eventstore import NewEvent, new_event_id
from eventstore.sqlite import SQLiteEventStore
from tests.support.bank import Account, account_repository

THREADS = 8
COMMANDS = 15


def _open_or_deposit(account: Account) -> None:
    if account.version == 0:
        account.open("shared", 0)
    account.deposit(1)


def _check_shared_stream(store: SQLiteEventStore, commands: int) -> None:
    log = store.read_all()
    positions = [e.position for e in log]
    assert positions == sorted(set(positions))
    stream = store.load_stream("shared")
    assert [e.version for e in stream] == list(range(1, len(stream) + 1))
    by_command = defaultdict(list)
    for event in stream:
        by_command[event.metadata.causation_id].append(event.version)
    assert len(by_command) == commands
    assert all(
        len(v) in (1, 2) and v == list(range(v[0], v[0] + len(v))) for v in by_command.values()
    )


@pytest.mark.parametrize("where", ["file", "memory"])
def test_threads_sharing_one_store_serialise_their_commands(db_path, where):
    with SQLiteEventStore(db_path if where == "file" else ":memory:") as store:
        repo = account_repository(store)

        def work(worker: int) -> list[int]:
            versions = []
            for i in range(COMMANDS):
                result = repo.retry_on_conflict(
                    "shared", _open_or_deposit, command_id=f"t{worker}-{i}", attempts=100
                )
                versions.append(result.version)
            return versions

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(work, range(THREADS)))
        assert all(v == sorted(v) for v in results)
        # opening adds one event to the first command only
        assert store.stream_version("shared") == THREADS * COMMANDS + 1
        _check_shared_stream(store, THREADS * COMMANDS)


def test_threads_with_their_own_store_objects_on_one_file(db_path):
    SQLiteEventStore(db_path).close()

    def work(worker: int) -> int:
        with SQLiteEventStore(db_path) as store:
            repo = account_repository(store)
            for i in range(COMMANDS):
                repo.retry_on_conflict(
                    "shared",
                    _open_or_deposit,
                    command_id=f"s{worker}-{i}",
                    attempts=200,
                    backoff=0.001,
                )
        return worker

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(work, range(4))) == [0, 1, 2, 3]
    with SQLiteEventStore(db_path) as store:
        assert store.stream_version("shared") == 4 * COMMANDS + 1
        _check_shared_stream(store, 4 * COMMANDS)


def test_readers_never_see_part_of_a_command_while_writers_write(db_path):
    """Every command appends two events; a reader must always see an even count."""
    with SQLiteEventStore(db_path) as store:
        repo = account_repository(store)
        done = threading.Event()
        seen_odd: list[int] = []
        reads = [0]

        def write(worker: int) -> None:
            account = Account(f"pair-{worker}")
            account.open("x", 0)
            account.deposit(1)
            repo.save(account)
            for _ in range(COMMANDS):
                account.deposit(1)
                account.deposit(1)
                repo.save(account)

        def read() -> None:
            while not done.is_set():
                for worker in range(4):
                    n = len(store.load_stream(f"pair-{worker}"))
                    if n % 2:
                        seen_odd.append(n)
                total = len(store.read_all())
                if total % 2:
                    seen_odd.append(total)
                reads[0] += 1

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(write, range(4)))
        finally:
            done.set()
            for t in readers:
                t.join(timeout=30)
        assert reads[0] > 0
        assert seen_odd == []
        assert store.head_position() == 4 * (2 + 2 * COMMANDS)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _read_in_short_lived_threads(store: SQLiteEventStore, count: int) -> None:
    for _ in range(count):  # e.g. a threading server: one thread per request
        reader = threading.Thread(target=store.read_all)
        reader.start()
        reader.join(timeout=10)
    gc.collect()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_short_lived_reader_threads_do_not_accumulate_open_files(db_path):
    # SQLite keeps a few closed descriptors for reuse (POSIX locks), so warm up first:
    # then the count must stay flat, not grow by two files per thread.
    with SQLiteEventStore(db_path) as store:
        _read_in_short_lived_threads(store, 100)
        before = _open_descriptors()
        _read_in_short_lived_threads(store, 200)
        assert _open_descriptors() - before < 50
        assert store.read_all() == []  # the store still works


def test_timestamps_never_decrease_along_positions_with_concurrent_writers(db_path):
    with SQLiteEventStore(db_path, synchronous="NORMAL") as store:

        def write(worker: int) -> None:
            for version in range(100):
                store.append(f"agg-{worker}", "A", version, [NewEvent(new_event_id(), "t", b"")])

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(write, range(6)))
        stamps = [e.timestamp_micros for e in store.read_all()]
        assert len(stamps) == 600
        assert stamps == sorted(stamps), "an event committed later got an earlier timestamp"


def test_same_command_sent_from_several_threads_is_stored_once(db_path):
    SQLiteEventStore(db_path).close()
    barrier = threading.Barrier(4)

    def send(_: int) -> bool:
        with SQLiteEventStore(db_path) as store:  # own connections, like separate servers
            repo = account_repository(store)
            barrier.wait(timeout=10)
            result = repo.retry_on_conflict(
                "acc-1", _open_or_deposit, command_id="cmd-once", attempts=50, backoff=0.001
            )
            return result.already_processed

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(send, range(4)))
    assert outcomes.count(False) == 1
    with SQLiteEventStore(db_path) as store:
        assert store.stream_version("acc-1") == 2  # opened + one deposit
