"""Exactly once in effect through the bus, checked row by row after each fault.

Each test runs real parts (a nats-server, SQLite files, relay and worker
processes killed with SIGKILL), bounded in count and time. This file is also
the children's entry point (see ``main`` at the bottom).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from eventstore import Event
from eventstore.core.projections import ProjectionManager
from eventstore.nats import EmbeddedNATS, NatsEventBus, Relay
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel
from tests.support.busproof import Ledger, append, assert_exactly_once, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


# -- arranging ------------------------------------------------------------------------------
@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start this file as a child process in a role; every child is killed at the end."""
    children: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }

    def start(*args: object) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, __file__, *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=None,  # inherited: pytest captures it
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", "child did not start"
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)


class Appender:
    """Appends ``total`` events in a thread, a few at a time, so faults land mid-stream."""

    def __init__(self, store_path: Path, total: int, pause: float = 0.002) -> None:
        self.total = total
        self.done = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                with SQLiteEventStore(store_path, synchronous="NORMAL") as store:
                    for _ in range(total // 10):
                        append(store, 10, per_append=5)
                        time.sleep(pause)
            except BaseException as exc:  # reported by wait()
                self.error = exc
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self, timeout: float = 60) -> None:
        assert self.done.wait(timeout), "the appender did not finish"
        if self.error is not None:
            raise self.error


def relayed(store_path: Path, stream: str) -> int:
    with SQLiteEventStore(store_path) as store:
        return store.load_checkpoint(f"relay:{stream}")


def stream_count(url: str, stream: str) -> int:
    async def count() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


def prove(  # type: ignore[no-untyped-def]
    url: str, store_path: Path, tmp_path: Path, stream: str, prefix: str, foreign: int = 0, **bus_kw
) -> None:
    """The stream holds each event once, in order (and ``foreign`` messages not from the
    relay), and a projection from it is exact."""
    with SQLiteEventStore(store_path) as store:
        head = store.head_position()
        wait_until(lambda: relayed(store_path, stream) >= head, 60, f"the relay to reach {head}")
        count = len(store.read_all()) + foreign
        assert stream_count(url, stream) == count, "the stream holds a duplicate"
        model_path = tmp_path / f"read-{stream}.db"
        with NatsEventBus(url, stream=stream, subject_prefix=prefix, store=store, **bus_kw) as bus:
            got = bus.read_all(0)
            assert [(e.event_id, e.position) for e in got] == [
                (e.event_id, e.position) for e in store.read_all()
            ]
            with SQLiteReadModel(model_path) as model:
                manager = ProjectionManager(bus)
                manager.register(Ledger(), read_model=model)
                manager.catch_up()
        assert_exactly_once(store, model_path)


# -- the proofs -----------------------------------------------------------------------------
def test_nats_server_stopped_and_started_mid_stream(
    own_nats: EmbeddedNATS, tmp_path: Path, spawn
) -> None:  # type: ignore[no-untyped-def]
    store_path = tmp_path / "events.db"
    SQLiteEventStore(store_path).close()
    spawn("relay", store_path, own_nats.url, "T_RESTART", "trs", 120)
    appender = Appender(store_path, 1500)
    wait_until(lambda: relayed(store_path, "T_RESTART") >= 300, 30, "the relay to make progress")
    own_nats.stop()
    time.sleep(0.5)
    own_nats.start()
    appender.wait()
    prove(own_nats.url, store_path, tmp_path, "T_RESTART", "trs")


@pytest.mark.parametrize("past_duplicate_window", [False, True])
def test_relay_sigkilled_and_restarted(
    own_nats: EmbeddedNATS,
    tmp_path: Path,
    spawn,
    past_duplicate_window: bool,  # type: ignore[no-untyped-def]
) -> None:
    store_path = tmp_path / "events.db"
    SQLiteEventStore(store_path).close()
    relay = spawn("relay", store_path, own_nats.url, "T_KILL", "tk", 1)
    appender = Appender(store_path, 1500)
    wait_until(lambda: relayed(store_path, "T_KILL") >= 300, 30, "the relay to make progress")
    kill(relay)
    if past_duplicate_window:
        time.sleep(1.5)  # the stream's duplicate window is 1 s: dedupe cannot help any more
    spawn("relay", store_path, own_nats.url, "T_KILL", "tk", 1)
    appender.wait()
    prove(own_nats.url, store_path, tmp_path, "T_KILL", "tk", duplicate_window=1)


def test_two_relays_on_one_store(own_nats: EmbeddedNATS, tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    store_path = tmp_path / "events.db"
    SQLiteEventStore(store_path).close()
    spawn("relay", store_path, own_nats.url, "T_TWO", "ttwo", 120)
    spawn("relay", store_path, own_nats.url, "T_TWO", "ttwo", 120)
    Appender(store_path, 1500).wait()
    prove(own_nats.url, store_path, tmp_path, "T_TWO", "ttwo")


def test_a_publish_failing_mid_pipeline_is_retried_in_order(
    nats_server: EmbeddedNATS, tmp_path: Path
) -> None:
    """A foreign message lands mid-pipeline: every later publish is rejected (10070), none is
    stored out of order, and the relay resumes after the stream's last event of its own."""
    store_path = tmp_path / "events.db"
    with SQLiteEventStore(store_path, synchronous="NORMAL") as store:
        append(store, 4000, per_append=50)

        async def scenario() -> None:
            async with NatsEventBus(nats_server.url, stream="T_PIPE", subject_prefix="tp") as bus:
                relay = Relay(store, bus, window=512, batch=4000)
                nc = await nats.connect(nats_server.url)

                async def intrude() -> None:
                    js = nc.jetstream()
                    while (await js.stream_info("T_PIPE")).state.messages < 300:
                        await asyncio.sleep(0)
                    await js.publish("tp.Foreign.x.y", b"not an event")

                intruder = asyncio.ensure_future(intrude())
                assert await relay.publish_pending() == 4000
                await intruder
                await nc.close()

        asyncio.run(scenario())
        assert stream_count(nats_server.url, "T_PIPE") == 4001
    prove(nats_server.url, store_path, tmp_path, "T_PIPE", "tp", foreign=1)


def test_a_consumer_group_worker_sigkilled(own_nats: EmbeddedNATS, tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    store_path, handled_path = tmp_path / "events.db", tmp_path / "handled.db"
    with SQLiteEventStore(store_path) as store:
        append(store, 600)

        async def relay_all() -> None:
            async with NatsEventBus(own_nats.url, stream="T_WK", subject_prefix="twk") as bus:
                await Relay(store, bus).publish_pending()

        asyncio.run(relay_all())
        victim = spawn("worker", own_nats.url, "T_WK", "twk", handled_path)
        spawn("worker", own_nats.url, "T_WK", "twk", handled_path)
        wait_until(lambda: _handled(handled_path)[0] >= 150, 30, "the workers to make progress")
        kill(victim)
        wait_until(lambda: _handled(handled_path)[0] >= 600, 60, "every event to be handled")
        time.sleep(0.5)
        _, rows, counts = _handled(handled_path)
        assert rows == sorted(e.event_id for e in store.read_all())
        expected: dict[str, int] = {}
        for e in store.read_all():
            expected[e.aggregate_id] = expected.get(e.aggregate_id, 0) + 1
        assert counts == expected


def _handled(path: Path) -> tuple[int, list[str], dict[str, int]]:
    try:
        conn = sqlite3.connect(path, timeout=10)
        try:
            rows = sorted(r[0] for r in conn.execute("SELECT event_id FROM handled"))
            counts = dict(conn.execute("SELECT aggregate_id, n FROM counts"))
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0, [], {}
    return len(rows), rows, counts


# -- the children ---------------------------------------------------------------------------
def _relay_main(store_path: str, url: str, stream: str, prefix: str, window: str) -> None:
    async def run() -> None:
        with SQLiteEventStore(store_path) as store:
            bus = NatsEventBus(
                url, stream=stream, subject_prefix=prefix, duplicate_window=float(window)
            )
            async with bus:
                relay = Relay(store, bus, poll_interval=0.05, retry_interval=0.1, window=64)
                print("ready", flush=True)
                await relay.run()

    asyncio.run(run())


def _worker_main(url: str, stream: str, prefix: str, handled_path: str) -> None:
    conn = sqlite3.connect(handled_path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS handled (event_id TEXT PRIMARY KEY)")
    conn.execute("CREATE TABLE IF NOT EXISTS counts (aggregate_id TEXT PRIMARY KEY, n INTEGER)")

    def handle(event: Event) -> None:  # idempotent: the event id is the key
        time.sleep(0.003)
        conn.execute("BEGIN IMMEDIATE")
        try:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO handled VALUES (?)", (event.event_id,)
            ).rowcount
            if inserted:
                conn.execute(
                    "INSERT INTO counts VALUES (?, 1) ON CONFLICT (aggregate_id) DO UPDATE "
                    "SET n = n + 1",
                    (event.aggregate_id,),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def run() -> None:
        async with NatsEventBus(url, stream=stream, subject_prefix=prefix) as bus:
            await bus.subscribe("ledger", handle, ack_wait=1.0, batch=5)
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(run())


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    {"relay": _relay_main, "worker": _worker_main}[role](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
