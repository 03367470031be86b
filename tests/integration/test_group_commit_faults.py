"""Group commit when something goes wrong around it: a lock held by another process, an
interrupt in the thread leading a group, the main thread ending under a service thread,
an ``async`` append where it would wait for its own thread. Each caller gets its own
answer, and nobody waits for ever.

The scenarios that end a main thread or interrupt it run in a process of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from eventstore import NewEvent, ProjectionManager, StreamAppend, new_event_id
from eventstore.sqlite import SQLiteEventStore, SQLiteReadModel
from eventstore.sqlite import StoreBusyError

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("held", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    """
)


def _event() -> NewEvent:
    return NewEvent(new_event_id(), "t.E", b"")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


@contextmanager
def _write_lock_held_by_another_process(path: Path) -> Iterator[None]:
    """Another process holds the file's write lock (``BEGIN IMMEDIATE``) until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


def test_a_read_model_in_a_file_another_process_locks_is_store_busy(tmp_path, db_path):
    # Only the store's own connections knew the busy timeout: a read model in a file of
    # its own failed its projection with a raw "database is locked".
    from eventstore.core.projections import ProjectionManager
    from eventstore.sqlite import SQLiteReadModel

    read_path = tmp_path / "read.db"
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(read_path, busy_timeout=0.2) as model:
        store.append("a", "A", 0, [_event()])

        class Rows:
            name = "rows"

            def reset(self, ctx):
                ctx.connection.execute("CREATE TABLE IF NOT EXISTS rows (p INTEGER)")

            def handle(self, event, ctx):
                ctx.connection.execute("INSERT INTO rows VALUES (?)", (ctx.position,))

        manager = ProjectionManager(store)
        manager.register(Rows(), read_model=model)
        with _write_lock_held_by_another_process(read_path):
            manager.catch_up()
        failure = manager.status("rows").last_error
        assert failure is not None and isinstance(failure.error, StoreBusyError), failure
        assert "0.2 s" in str(failure.error)
        manager.resume("rows")
        manager.catch_up()
        assert model.query("SELECT p FROM rows") == [(1,)]


@contextmanager
def _writer_held(store: SQLiteEventStore) -> Iterator[None]:
    """Another thread holds the store's write lock until the block ends (held on this
    thread, an ``async`` append here would be written here, as ``append`` is)."""
    held, free = threading.Event(), threading.Event()

    def hold() -> None:
        with store._db.write_lock:
            held.set()
            free.wait(20)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        yield
    finally:
        free.set()
        holder.join(10)


def _run_script(script: str, *args: str) -> dict[str, object]:
    """Run ``script`` in a Python process of its own; its last line of output is JSON."""
    process = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=ROOT,
    )
    lines = process.stdout.strip().splitlines()
    assert process.returncode == 0 and lines, f"exit {process.returncode}\n{process.stderr}"
    report: dict[str, object] = json.loads(lines[-1])
    return report


# -- a lock held by another process ---------------------------------------------------------
def test_a_write_lock_held_by_another_process_past_busy_timeout_is_store_busy(db_path):
    with SQLiteEventStore(db_path, busy_timeout=0.2) as store:
        store.count_events()  # the file exists, with its schema

        async def grouped() -> list[BaseException | object]:
            return await asyncio.gather(
                *(store.append_async(f"g-{i}", "A", 0, [_event()]) for i in range(3)),
                return_exceptions=True,
            )

        with _write_lock_held_by_another_process(db_path):
            with pytest.raises(StoreBusyError) as caught:
                store.append("a", "A", 0, [_event()], command_id="cmd-a")
            answers = asyncio.run(grouped())

        error = caught.value
        assert (error.path, error.busy_timeout) == (str(db_path), 0.2)
        message = str(error)
        for words in (str(db_path), "another connection or process", "0.2 s", "nothing was"):
            assert words in message, message
        assert "same command id" in message and "busy_timeout" in error.fix
        assert isinstance(error.__cause__, sqlite3.OperationalError)
        assert all(isinstance(answer, StoreBusyError) for answer in answers), answers
        assert store.count_events() == 0
        # Once the other process lets go, the same command is applied, once.
        first = store.append("a", "A", 0, [_event()], command_id="cmd-a")
        again = store.append("a", "A", 0, [_event()], command_id="cmd-a")
        assert again.already_processed and again.events == first.events


def test_each_caller_of_a_group_that_failed_whole_raises_its_own_error(db_path):
    with SQLiteEventStore(db_path, busy_timeout=0.2) as store:
        group = store._group
        assert group is not None
        store.count_events()
        errors: dict[str, BaseException] = {}

        def client(name: str) -> None:
            try:
                store.append(name, "A", 0, [_event()])
            except Exception as exc:
                errors[name] = exc

        async def tasks() -> list[BaseException | object]:
            with _writer_held(store):
                leader = threading.Thread(target=client, args=("leader",))
                leader.start()
                while not (group._leader_thread and not group._queue):  # took its own group
                    await asyncio.sleep(0.001)
                futures = [
                    asyncio.ensure_future(store.append_async(f"task-{i}", "A", 0, [_event()]))
                    for i in range(4)
                ]
                while len(group._queue) < 4:  # queued behind the leader, which waits
                    await asyncio.sleep(0.001)
            answers = await asyncio.gather(*futures, return_exceptions=True)
            leader.join(10)
            return answers

        with _write_lock_held_by_another_process(db_path):
            # Threads: the first leads alone while the others queue; they fail as one group.
            threads = [threading.Thread(target=client, args=(f"client-{i}",)) for i in range(4)]
            threads[0].start()
            while not group._leading:
                time.sleep(0.001)
            for thread in threads[1:]:
                thread.start()
            for thread in threads:
                thread.join(10)
            # Tasks: one group of four, handed to the writer thread by a synchronous leader.
            answers = asyncio.run(tasks())

        assert sorted(errors) == ["client-0", "client-1", "client-2", "client-3", "leader"]
        raised = [errors[f"client-{i}"] for i in range(4)] + list(answers)
        assert all(isinstance(error, StoreBusyError) for error in raised), raised
        assert len({id(error) for error in raised}) == len(raised), "one object, several callers"
        for name in ("client-1", "client-2", "client-3"):
            frames = traceback.extract_tb(errors[name].__traceback__)
            assert [f.name for f in frames].count("client") == 1, (name, frames)
            # Chained from the group's one error, which keeps the sqlite3 error as its cause.
            assert isinstance(errors[name].__cause__, StoreBusyError)
            assert isinstance(errors[name].__cause__.__cause__, sqlite3.OperationalError)
        assert store.count_events() == 0


# -- the main thread ends, or is interrupted --------------------------------------------------
MAIN_THREAD_ENDS = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    from eventstore import NewEvent, new_event_id
    from eventstore.sqlite import SQLiteEventStore

    store = SQLiteEventStore(sys.argv[1])
    group = store._group
    report = {}

    def event():
        return NewEvent(new_event_id(), "t.E", b"")

    def service():
        async def run():
            while threading.main_thread().is_alive():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # past concurrent.futures' exit hook: pools refuse work
            try:
                first = await asyncio.wait_for(store.append_async("first", "A", 0, [event()]), 5)
                report["started"] = first.events[0].position
            except asyncio.TimeoutError:
                report["started"] = "no answer in 5 s"
            # A synchronous leader hands the async callers queued behind it on.
            held, free = threading.Event(), threading.Event()

            def hold():
                with store._db.write_lock:
                    held.set()
                    free.wait(10)

            threading.Thread(target=hold).start()
            held.wait(10)
            leader = threading.Thread(target=store.append, args=("sync", "A", 0, [event()]))
            leader.start()
            while not group._leading:
                await asyncio.sleep(0.001)
            tasks = [
                asyncio.ensure_future(store.append_async(f"w-{i}", "A", 0, [event()]))
                for i in range(3)
            ]
            while len(group._queue) < 3:
                await asyncio.sleep(0.001)
            free.set()
            try:
                done = await asyncio.wait_for(asyncio.gather(*tasks), 5)
                report["handed"] = sorted(r.events[0].position for r in done)
            except asyncio.TimeoutError:
                report["handed"] = "no answer in 5 s"
            leader.join(10)
            report["stored"] = store.count_events()

        asyncio.run(run())
        print(json.dumps(report), flush=True)

    threading.Thread(target=service).start()
    """
)


def test_async_appends_are_written_after_the_main_thread_has_ended(db_path):
    report = _run_script(MAIN_THREAD_ENDS, str(db_path))
    assert report == {"started": 1, "handed": [3, 4, 5], "stored": 5}


CTRL_C_IN_A_LEADER = textwrap.dedent(
    """
    import _thread, asyncio, json, signal, sys, threading, time
    from eventstore import NewEvent, new_event_id
    from eventstore.sqlite import SQLiteEventStore

    # A process started in the background by a shell inherits SIGINT ignored, and then
    # interrupt_main() does nothing: Ctrl-C must reach this script however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    store = SQLiteEventStore(sys.argv[1], busy_timeout=10)
    group = store._group
    report = {}

    def event():
        return NewEvent(new_event_id(), "t.E", b"")

    # The main thread's append runs a slow statement (a trigger): it is interrupted there,
    # inside the group's transaction, after the members before it were written.
    entered = threading.Event()
    conn = store._db.writer

    def enter():
        report["slow statement on"] = (
            "main" if threading.current_thread() is threading.main_thread() else "another"
        )
        entered.set()

    conn.create_function("entered", 0, enter)
    conn.execute(  # about 3 s here: the interrupt surely lands inside it
        "CREATE TRIGGER slow AFTER INSERT ON events WHEN NEW.aggregate_id = 'main' "
        "BEGIN SELECT entered(); SELECT count(*) FROM (WITH RECURSIVE c(x) AS "
        "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) SELECT x FROM c); END"
    )

    held, free = threading.Event(), threading.Event()

    def hold():  # the writer is held while the group queues
        with store._db.write_lock:
            held.set()
            free.wait(20)

    def sync_append(name):
        try:
            store.append(name, "A", 0, [event()])
            report[name] = "stored"
        except BaseException as exc:
            report[name] = type(exc).__name__

    def service():  # an asyncio service on another thread: its tasks join the group
        async def one(i):
            try:
                await store.append_async(f"task-{i}", "A", 0, [event()])
                return "stored"
            except Exception as exc:
                return type(exc).__name__

        async def run():
            return await asyncio.gather(*(one(i) for i in range(5)))

        try:
            report["tasks"] = asyncio.run(run())
        except BaseException as exc:
            report["tasks"] = f"event loop ended by {type(exc).__name__}"

    def when_queued(count, then):
        deadline = time.monotonic() + 20
        while len(group._queue) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        then()

    def interrupt():
        entered.wait(20)
        _thread.interrupt_main()  # Ctrl-C, raised when the slow statement returns

    threading.Thread(target=hold).start()
    held.wait(10)
    lone = threading.Thread(target=sync_append, args=("lone",))  # leads alone, waits
    lone.start()
    while not group._leading:
        time.sleep(0.001)
    service_thread = threading.Thread(target=service)
    service_thread.start()
    while len(group._queue) < 5:
        time.sleep(0.001)
    other = threading.Thread(target=when_queued, args=(6, lambda: sync_append("other")))
    other.start()
    threading.Thread(target=when_queued, args=(7, free.set)).start()
    threading.Thread(target=interrupt, daemon=True).start()
    try:  # queued after the tasks, then handed the lead: it writes the group
        store.append("main", "A", 0, [event()])
        report["main"] = "stored"
    except BaseException as exc:
        report["main"] = type(exc).__name__
    for thread in (lone, service_thread, other):
        thread.join(20)
    report["stored"] = sorted({e.aggregate_id for e in store.read_all()})
    report["open"] = store._db.writer.in_transaction
    print(json.dumps(report), flush=True)
    """
)


def test_ctrl_c_in_the_thread_leading_a_group_interrupts_only_its_own_caller(db_path):
    """The others of the group were rolled back with it: the next leader writes them."""
    report = _run_script(CTRL_C_IN_A_LEADER, str(db_path))
    assert report["slow statement on"] == "main", report  # it leads the group
    assert report["main"] == "KeyboardInterrupt", report
    assert report["tasks"] == ["stored"] * 5
    assert report["other"] == "stored" and report["lone"] == "stored"
    assert report["stored"] == sorted(["lone", "other", *(f"task-{i}" for i in range(5))])
    assert report["open"] is False


# -- an async append that would wait for its own thread --------------------------------------
@pytest.mark.parametrize("group_commit", [True, False], ids=["grouped", "ungrouped"])
def test_an_async_append_inside_a_read_model_batch_answers_as_append_does(db_path, group_commit):
    """Through the store object, not ``ctx.store``, inside the batch's transaction: the
    thread holds the write lock, so queued (or on a worker thread) it would wait for
    ever. It answers as the synchronous append does on that thread."""
    store = SQLiteEventStore(db_path, group_commit=group_commit)
    store.append("a", "A", 0, [_event()])
    outcomes: dict[str, object] = {}

    def one() -> list[StreamAppend]:
        return [StreamAppend("echo", "A", 0, [_event()])]

    calls = {
        "append": lambda: store.append("echo", "A", 0, [_event()]),
        "append_async": lambda: asyncio.run(store.append_async("echo", "A", 0, [_event()])),
        "append_many": lambda: store.append_many(one()),
        "append_many_async": lambda: asyncio.run(store.append_many_async(one())),
    }

    class Echo:
        name = "echo"
        event_types = ["t.E"]

        def reset(self, ctx: object) -> None:
            pass

        def handle(self, event: object, ctx: object) -> None:
            for how, call in calls.items():
                try:
                    call()
                    outcomes[how] = "stored"
                except Exception as exc:
                    outcomes[how] = exc

    manager = ProjectionManager(store)
    manager.register(Echo(), read_model=SQLiteReadModel(store))
    run = threading.Thread(target=manager.catch_up, daemon=True)
    run.start()
    run.join(10)
    assert not run.is_alive(), f"the batch waited for ever; answered so far: {outcomes}"
    for sync, asynchronous in (("append", "append_async"), ("append_many", "append_many_async")):
        expected, got = outcomes[sync], outcomes[asynchronous]
        assert isinstance(expected, Exception), expected
        assert (type(got), str(got)) == (type(expected), str(expected))
    assert store.stream_version("echo") == 0
    store.close()


def test_an_async_append_from_a_commit_listener_does_not_wait_for_itself(db_path):
    with SQLiteEventStore(db_path) as store:

        def listener(head: int) -> None:  # on the writing thread, right after the commit
            if head == 1:
                asyncio.run(store.append_async("echo", "A", 0, [_event()]))

        store.add_commit_listener(listener)
        writer = threading.Thread(target=store.append, args=("a", "A", 0, [_event()]))
        writer.daemon = True
        writer.start()
        writer.join(10)
        assert not writer.is_alive(), "the listener's append waited for its own thread"
        assert store.stream_version("echo") == 1
