"""A balance read model stays equal to a fresh rebuild across crashes, races and live appends.

Each test runs real processes (this file is also their entry point: see
``main`` at the bottom), bounded in time, and kills whatever is left.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import ProjectionManager, ProjectionStatus
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel
from tests.support.children import children, finish

pytestmark = pytest.mark.slow

OPENED = "testbank.v1.AccountOpened"
DEPOSITED = "testbank.v1.MoneyDeposited"
ACCOUNTS = 20


def _pb():  # type: ignore[no-untyped-def]
    from tests.support.protos import compiled

    return compiled("bank")


class Balances:
    """Balances per account, plus one row per applied event naming the runner that applied it."""

    name = "balances"

    def __init__(self, delay: float = 0.0) -> None:
        self.pb = _pb()
        self.delay = delay
        self.runner = str(os.getpid())

    def reset(self, ctx: ProjectionContext) -> None:
        conn = ctx.connection
        conn.execute(
            "CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance INTEGER NOT NULL)"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS applied (position INTEGER, runner TEXT)")
        conn.execute("DELETE FROM balances")
        conn.execute("DELETE FROM applied")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        if self.delay:
            time.sleep(self.delay)
        if event.event_type == OPENED:
            amount = self.pb.AccountOpened.FromString(event.data).initial_balance
        elif event.event_type == DEPOSITED:
            amount = self.pb.MoneyDeposited.FromString(event.data).amount
        else:
            return
        ctx.connection.execute(
            "INSERT INTO balances VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET balance = balance + excluded.balance",
            (event.aggregate_id, amount),
        )
        ctx.connection.execute("INSERT INTO applied VALUES (?, ?)", (ctx.position, self.runner))


# -- arranging ------------------------------------------------------------------------
def seed(store_path: Path, deposits_per_account: int) -> int:
    """Open ACCOUNTS accounts with 100 each and deposits of 1..n; returns the head."""
    pb = _pb()
    with SQLiteEventStore(store_path, synchronous="NORMAL") as store:
        for a in range(ACCOUNTS):
            events = [
                NewEvent(
                    new_event_id(),
                    OPENED,
                    pb.AccountOpened(owner=f"o{a}", initial_balance=100).SerializeToString(),
                )
            ]
            events += [
                NewEvent(new_event_id(), DEPOSITED, pb.MoneyDeposited(amount=d).SerializeToString())
                for d in range(1, deposits_per_account + 1)
            ]
            store.append(f"acc-{a}", "Account", 0, events)
        return store.head_position()


def balances(path: Path) -> dict[str, int]:
    with SQLiteReadModel(path) as model:
        return dict(model.query("SELECT id, balance FROM balances"))


def fresh_rebuild(store_path: Path, tmp_path: Path) -> dict[str, int]:
    target = tmp_path / "fresh.db"
    with SQLiteEventStore(store_path) as store, SQLiteReadModel(target) as model:
        manager = ProjectionManager(store)
        manager.register(Balances(), read_model=model)
        manager.catch_up()
        return dict(model.query("SELECT id, balance FROM balances"))


def stored_checkpoint(path: Path) -> int:
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            row = conn.execute(
                "SELECT position FROM projection_checkpoints WHERE name = 'balances'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return int(row[0]) if row else 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start this file as a child process in a role; every child is killed at the end."""
    yield from children(__file__)


# -- the proofs -----------------------------------------------------------------------
def test_a_runner_killed_mid_catch_up_and_restarted_equals_a_fresh_rebuild(
    tmp_path: Path, spawn
) -> None:
    store_path, model_path = tmp_path / "events.db", tmp_path / "read.db"
    head = seed(store_path, 99)  # 2,000 events
    child = spawn("catch-up", store_path, model_path, 50, 0.001, "")
    wait_until(lambda: stored_checkpoint(model_path) >= 200, 30, "the runner to make progress")
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    at_kill = stored_checkpoint(model_path)
    assert 0 < at_kill < head, "the kill must land mid-catch-up"

    restarted = spawn("catch-up", store_path, model_path, 500, 0, "")
    finish(restarted, 60)
    assert stored_checkpoint(model_path) == head
    assert balances(model_path) == fresh_rebuild(store_path, tmp_path)


def test_two_runners_racing_apply_every_event_exactly_once(tmp_path: Path, spawn) -> None:
    store_path, model_path = tmp_path / "events.db", tmp_path / "read.db"
    head = seed(store_path, 74)  # 1,500 events
    go = tmp_path / "go"
    runners = [spawn("catch-up", store_path, model_path, 20, 0.0002, go) for _ in range(2)]
    wait_until(lambda: len(list(tmp_path.glob("go.ready.*"))) == 2, 60, "both runners to start")
    go.touch()
    for runner in runners:
        finish(runner, 90)
    with SQLiteReadModel(model_path) as model:
        rows = model.query("SELECT position, runner FROM applied ORDER BY position")
    assert [position for position, _ in rows] == list(range(1, head + 1))
    assert len({runner for _, runner in rows}) == 2, "both runners must have applied events"
    assert balances(model_path) == fresh_rebuild(store_path, tmp_path)


def test_a_rebuild_while_another_process_appends_equals_a_fresh_rebuild(
    tmp_path: Path, spawn
) -> None:
    store_path, model_path = tmp_path / "events.db", tmp_path / "read.db"
    seed(store_path, 49)  # 1,000 events
    stop = tmp_path / "stop"
    with SQLiteEventStore(store_path) as store, SQLiteReadModel(model_path) as model:
        manager = ProjectionManager(store, batch_size=50)
        manager.register(Balances(delay=0.0005), read_model=model)
        manager.catch_up()
        writer = spawn("write", store_path, 2000, stop)
        start_head = store.head_position()
        wait_until(lambda: store.head_position() > start_head + 20, 30, "the writer to append")
        head_before = store.head_position()
        info = manager.rebuild("balances", show_progress=False)
        head_after = store.head_position()
        stop.touch()
        finish(writer, 60)
        # Finished; READY, or CATCHING_UP when the writer appended after its last read.
        assert info.status in (ProjectionStatus.READY, ProjectionStatus.CATCHING_UP)
        assert head_after > head_before, "appends must have continued during the rebuild"
        assert info.checkpoint > head_before, "the rebuild must pick up those appends"
        manager.catch_up()
        assert manager.status("balances").checkpoint == store.head_position()
        rows = model.query("SELECT position FROM applied ORDER BY position")
        assert [r[0] for r in rows] == list(range(1, store.head_position() + 1))
    assert balances(model_path) == fresh_rebuild(store_path, tmp_path)


# -- the children ---------------------------------------------------------------------
class SlowSource:
    """The store read with a varying latency, as a remote source would be: the runner then
    spends time outside its read-model transaction, and which runner leads keeps changing."""

    def __init__(self, store: SQLiteEventStore, latency: float) -> None:
        self.store = store
        self.latency = latency

    def read_all(self, after_position: int = 0, **kwargs: object) -> list[Event]:
        time.sleep(random.uniform(0, self.latency))
        return self.store.read_all(after_position, **kwargs)  # type: ignore[arg-type]

    def head_position(self) -> int:
        return self.store.head_position()


def run_catch_up(store_path: str, model_path: str, batch: str, delay: str, go: str) -> None:
    projection = Balances(delay=float(delay))
    with SQLiteEventStore(store_path) as store, SQLiteReadModel(model_path) as model:
        source = SlowSource(store, 0.01) if go else store
        manager = ProjectionManager(source, batch_size=int(batch))
        manager.register(projection, read_model=model)
        if go:
            Path(f"{go}.ready.{os.getpid()}").touch()
            deadline = time.monotonic() + 30
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.005)
        manager.catch_up()
        info = manager.status("balances")
        if info.status is not ProjectionStatus.READY:
            raise SystemExit(f"runner ended {info.status}: {info.last_error}")
        print(info.checkpoint)


def run_writer(store_path: str, max_events: str, stop: str) -> None:
    pb = _pb()
    with SQLiteEventStore(store_path) as store:
        for i in range(int(max_events)):
            if os.path.exists(stop):
                break
            account = f"acc-{i % ACCOUNTS}"
            data = pb.MoneyDeposited(amount=1000 + i).SerializeToString()
            store.append(
                account,
                "Account",
                store.stream_version(account),
                [NewEvent(new_event_id(), DEPOSITED, data)],
            )
            time.sleep(0.001)


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    if role == "catch-up":
        run_catch_up(*args)
    elif role == "write":
        run_writer(*args)
    else:
        raise SystemExit(f"unknown role {role!r}: use catch-up or write")


if __name__ == "__main__":
    main(sys.argv[1:])
