"""Several real processes on one SQLite file: contention and crashes (slow; marked ``slow``).

The workers are separate Python processes (``subprocess``) running the public
API; every one is bounded in time and count and killed on the way out.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from eventstore.sqlite import SQLiteEventStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # seconds any one worker may live

RETRYING_WORKER = textwrap.dedent(
    """
    import json, sys
    from eventstore import ConcurrencyError
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import account_repository

    path, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

    calls = 0

    def deposit(account):
        global calls
        calls += 1
        if account.version == 0:
            account.open("shared", 0)
        else:
            account.deposit(1)

    with SQLiteEventStore(path) as store:
        repo = account_repository(store)
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        for i in range(count):
            command_id = f"{worker}-{i}"
            try:
                result = repo.retry_on_conflict(
                    "shared", deposit, command_id=command_id, attempts=60, backoff=0.002
                )
            except ConcurrencyError as exc:
                print(json.dumps({"cmd": command_id, "failed": str(exc)}), flush=True)
                continue
            (event,) = result.events
            line = {"cmd": command_id, "version": event.version, "position": event.position,
                    "calls": calls}
            print(json.dumps(line), flush=True)
    """
)

EVENTS_PER_COMMAND = 4
ACCOUNTS = ("k-0", "k-1", "k-2")

CRASHING_WRITER = textwrap.dedent(
    f"""
    import sys
    from eventstore import AggregateNotFoundError
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import Account, account_repository

    path, prefix = sys.argv[1], sys.argv[2]
    store = SQLiteEventStore(path)
    repo = account_repository(store)
    accounts = {{}}
    for account_id in {ACCOUNTS!r}:
        try:
            accounts[account_id] = repo.load(account_id)
        except AggregateNotFoundError:
            accounts[account_id] = Account(account_id)
    payload = "x" * 2000
    for i in range(100_000):
        account = accounts[{ACCOUNTS!r}[i % {len(ACCOUNTS)}]]
        start = 0
        if account.version == 0:
            account.open(payload, 0)
            start = 1
        for amount in range(start, {EVENTS_PER_COMMAND}):
            account.deposit(amount + 1)
        command_id = f"{{prefix}}-{{i}}"
        repo.save_with_command(account, command_id)
        print(command_id, flush=True)  # acknowledged: save_with_command returned
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


@contextmanager
def _processes(*argvs: list[str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Start one Python process per argv; kill any still alive on the way out."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for argv in argvs:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", *argv],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=_env(),
                    cwd=ROOT,
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_four_processes_retrying_on_one_aggregate_keep_versions_and_positions(db_path):
    SQLiteEventStore(db_path).close()  # create the schema before the race
    per_worker = 40
    workers = [f"w{n}" for n in range(4)]
    with _processes(
        *([RETRYING_WORKER, str(db_path), w, str(per_worker)] for w in workers)
    ) as procs:
        for proc in procs:  # all imported and open before any starts
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=DEADLINE)
            assert proc.returncode == 0, err
            outputs.append([json.loads(line) for line in out.splitlines()])

    assert all(len(lines) == per_worker for lines in outputs)
    succeeded = [line for lines in outputs for line in lines if "failed" not in line]
    failed = [line["cmd"] for lines in outputs for line in lines if "failed" in line]
    assert succeeded, "no command succeeded"
    for lines in outputs:  # each worker's own commits come one after the other
        positions = [line["position"] for line in lines if "failed" not in line]
        assert positions == sorted(positions)

    with SQLiteEventStore(db_path) as store:
        stream = store.load_stream("shared")
        log = store.read_all()
        assert store.stream_version("shared") == len(succeeded)
        assert [e.version for e in stream] == list(range(1, len(succeeded) + 1))
        positions = [e.position for e in log]
        assert positions == sorted(set(positions)), "positions unique and increasing"
        assert [e.version for e in log] == list(range(1, len(log) + 1)), "commit order"
        by_command = defaultdict(list)
        for event in log:
            by_command[event.metadata.causation_id].append(event)
        assert sorted(by_command) == sorted(line["cmd"] for line in succeeded)
        for line in succeeded:
            (event,) = by_command[line["cmd"]]
            assert (event.version, event.position) == (line["version"], line["position"])
        assert not set(failed) & set(by_command)


def _read_acks(proc: subprocess.Popen[str], wanted: int) -> list[str]:
    acks: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while len(acks) < wanted:
        assert time.monotonic() < deadline, "writer too slow"
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"writer exited early: {proc.stderr.read()}")
        acks.append(line.strip())
    return acks


def _check_after_crash(db_path: Path, acked: set[str]) -> int:
    """Every acknowledged command is whole in the store, and no command is partial."""
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with SQLiteEventStore(db_path) as store:
        log = store.read_all()
        by_command: dict[str, list] = defaultdict(list)
        for event in log:
            by_command[event.metadata.causation_id].append(event)
        missing = acked - set(by_command)
        assert not missing, f"acknowledged commands lost: {sorted(missing)[:5]}"
        for command_id, events in by_command.items():
            assert len(events) == EVENTS_PER_COMMAND, f"{command_id} is partly stored"
            versions = [e.version for e in events]
            assert versions == list(range(versions[0], versions[0] + EVENTS_PER_COMMAND))
            assert store.processed_command(command_id) is not None
        unacked_by_run = Counter(c.split("-")[0] for c in set(by_command) - acked)
        assert all(n == 1 for n in unacked_by_run.values()), (
            "at most the command in flight when a writer was killed is stored unacknowledged"
        )
        for account_id in ACCOUNTS:
            versions = [e.version for e in store.load_stream(account_id)]
            assert versions == list(range(1, len(versions) + 1))
        assert [e.position for e in log] == sorted({e.position for e in log})
        return len(by_command)


def test_writer_killed_mid_run_loses_no_acknowledged_command_and_stores_none_partly(db_path):
    rng = random.Random(20261126)
    acked: set[str] = set()
    stored = 0
    for round_ in range(5):
        with _processes([CRASHING_WRITER, str(db_path), f"r{round_}"]) as (proc,):
            acks = _read_acks(proc, rng.randint(15, 60))
            time.sleep(rng.uniform(0, 0.02))  # land anywhere in the next command
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=10)
            assert proc.returncode == -signal.SIGKILL
            acks.extend(line.strip() for line in out.splitlines() if line.strip())
        acked.update(acks)
        now_stored = _check_after_crash(db_path, acked)
        assert now_stored > stored, "the reopened store accepts new commands"
        stored = now_stored


OPENING_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from eventstore import NewEvent, new_event_id
    from eventstore.sqlite import SQLiteEventStore

    folder, worker = Path(sys.argv[1]), sys.argv[2]
    workers, rounds = int(sys.argv[3]), int(sys.argv[4])
    for r in range(rounds):
        (folder / f"ready-{r}-{worker}").touch()  # a barrier: all start each round together
        deadline = time.monotonic() + 30
        while len(list(folder.glob(f"ready-{r}-*"))) < workers:
            assert time.monotonic() < deadline, "barrier timed out"
            time.sleep(0.0005)
        with SQLiteEventStore(folder / f"new-{r}.db") as store:
            store.append(worker, "A", 0, [NewEvent(new_event_id(), "t", b"")])
            assert {s.journal_mode for s in store.connection_settings()} == {"WAL"}
    """
)


def test_processes_creating_a_new_file_at_once_all_open_it(tmp_path):
    workers, rounds = [f"o{n}" for n in range(4)], 25
    argvs = ([OPENING_WORKER, str(tmp_path), w, str(len(workers)), str(rounds)] for w in workers)
    with _processes(*argvs) as procs:
        for proc in procs:
            _, err = proc.communicate(timeout=DEADLINE)
            assert proc.returncode == 0, err
    for r in range(rounds):
        with SQLiteEventStore(tmp_path / f"new-{r}.db") as store:
            assert sorted(e.aggregate_id for e in store.read_all()) == workers


CONCURRENT_CRASHING_WRITER = textwrap.dedent(
    f"""
    import asyncio, sys, threading
    from eventstore.sqlite import SQLiteEventStore
    from tests.support.bank import account_repository

    path, prefix = sys.argv[1], sys.argv[2]
    store = SQLiteEventStore(path)
    repo = account_repository(store)
    out = threading.Lock()

    def ack(command_id):
        with out:
            print(command_id, flush=True)  # acknowledged: the save returned

    def change(account):
        start = 0
        if account.version == 0:
            account.open("x" * 500, 0)
            start = 1
        for amount in range(start, {EVENTS_PER_COMMAND}):
            account.deposit(amount + 1)

    def thread_client(n):
        for i in range(100_000):
            command_id = f"{{prefix}}-t{{n}}-{{i}}"
            repo.retry_on_conflict(f"{{prefix}}-t{{n}}", change, command_id=command_id)
            ack(command_id)

    async def task_client(n):
        for i in range(100_000):
            command_id = f"{{prefix}}-a{{n}}-{{i}}"
            await repo.retry_on_conflict_async(f"{{prefix}}-a{{n}}", change, command_id=command_id)
            ack(command_id)

    for n in range(4):
        threading.Thread(target=thread_client, args=(n,), daemon=True).start()

    async def main():
        await asyncio.gather(*(task_client(n) for n in range(8)))

    asyncio.run(main())
    """
)


def test_concurrent_clients_killed_during_groups_lose_no_acknowledged_command(db_path):
    """4 threads and 8 tasks in one process, SIGKILLed while groups are written."""
    rng = random.Random(20261201)
    acked: set[str] = set()
    for round_ in range(3):
        with _processes([CONCURRENT_CRASHING_WRITER, str(db_path), f"r{round_}"]) as (proc,):
            acks = _read_acks(proc, rng.randint(40, 120))
            time.sleep(rng.uniform(0, 0.02))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            # Read through the text stream: readline() above may hold lines read ahead,
            # which communicate() (reading the file descriptors) would not see.
            out = proc.stdout.read()
            assert proc.returncode == -signal.SIGKILL
            acks.extend(line.strip() for line in out.splitlines() if line.strip())
        acked.update(acks)
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw.close()
        with SQLiteEventStore(db_path) as store:
            log = store.read_all()
            by_command: dict[str, list] = defaultdict(list)
            for event in log:
                by_command[event.metadata.causation_id].append(event)
            missing = acked - set(by_command)
            assert not missing, f"acknowledged commands lost: {sorted(missing)[:5]}"
            for command_id, events in by_command.items():
                assert len(events) == EVENTS_PER_COMMAND, f"{command_id} is partly stored"
                assert store.processed_command(command_id) is not None
            # At most one unacknowledged command per client: the one in flight.
            in_flight = Counter(c.rsplit("-", 1)[0] for c in set(by_command) - acked)
            assert all(n == 1 for n in in_flight.values()), in_flight
            streams = {e.aggregate_id for e in log}
            for aggregate_id in streams:
                versions = [e.version for e in store.load_stream(aggregate_id)]
                assert versions == list(range(1, len(versions) + 1))
            assert [e.position for e in log] == list(range(1, len(log) + 1))
