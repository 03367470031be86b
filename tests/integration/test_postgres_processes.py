"""Real processes on one PostgreSQL database: 8 writers with a tailing reader, and a
projection runner SIGKILLed mid-catch-up (slow; bounded in count and time).

This file is also the children's entry point (``main`` at the bottom).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import ProjectionManager, ProjectionStatus
from eventstore.postgres import PostgresEventStore, PostgresReadModel
from tests.support import postgres
from tests.support.children import children, finish

pytestmark = pytest.mark.slow

WRITERS = 8
PER_WRITER = 150
ACCOUNTS = 12


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start this file as a child process in a role; every child is killed at the end."""
    yield from children(__file__)


def test_eight_writer_processes_lose_duplicate_and_reorder_nothing(spawn) -> None:
    dsn, schema = postgres.server_dsn(), postgres.fresh_schema()
    PostgresEventStore(dsn, schema=schema).close()  # the schema before the race
    writers = [spawn("write", dsn, schema, w, PER_WRITER) for w in range(WRITERS)]
    seen: list[Event] = []
    total = WRITERS * PER_WRITER
    deadline = time.monotonic() + 120
    with PostgresEventStore(dsn, schema=schema) as store:
        after = 0
        while len(seen) < total and time.monotonic() < deadline:
            page = store.read_page(after, limit=500)
            seen.extend(page.events)
            after = page.events[-1].position if page.events else after
            if not page.events:
                time.sleep(0.01)
        for writer in writers:
            finish(writer, 60)
        log = store.read_all()
    assert len(seen) == total, "the tailing reader saw every event"
    assert [e.event_id for e in seen] == [e.event_id for e in log], "once each, in position order"
    positions = [e.position for e in log]
    assert positions == sorted(set(positions))
    assert len({e.event_id for e in log}) == total
    by_writer: dict[str, list[int]] = {}
    for event in log:
        by_writer.setdefault(event.data.decode().split(":")[0], []).append(
            int(event.data.decode().split(":")[1])
        )
    assert all(v == list(range(PER_WRITER)) for v in by_writer.values()), "each writer's order kept"
    versions: dict[str, list[int]] = {}
    for event in log:
        versions.setdefault(event.aggregate_id, []).append(event.version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values()), "versions gapless"


class Balances:
    name = "balances"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute(
            "CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance BIGINT NOT NULL)"
        )
        ctx.connection.execute("DELETE FROM balances")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        if self.delay:
            time.sleep(self.delay)
        ctx.connection.execute(
            "INSERT INTO balances VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET balance = balances.balance + excluded.balance",
            (event.aggregate_id, int(event.data)),
        )


def _checkpoint(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute(
                f"SELECT position FROM {schema}.projection_checkpoints WHERE name = 'balances'"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def test_a_runner_killed_mid_catch_up_and_restarted_equals_a_fresh_rebuild(spawn) -> None:
    dsn, schema, fresh = postgres.server_dsn(), postgres.fresh_schema(), postgres.fresh_schema()
    with PostgresEventStore(dsn, schema=schema) as store:
        for a in range(ACCOUNTS):
            store.append(
                f"acc-{a}",
                "Account",
                0,
                [NewEvent(new_event_id(), "Deposited", str(d).encode()) for d in range(1, 101)],
            )
        head = store.head_position()
    child = spawn("catch-up", dsn, schema, 40, 0.001)
    deadline = time.monotonic() + 60
    while _checkpoint(dsn, schema) < 200:
        assert time.monotonic() < deadline, "the runner made no progress"
        assert child.poll() is None, child.communicate()[1]
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    at_kill = _checkpoint(dsn, schema)
    assert 0 < at_kill < head, "the kill landed mid-catch-up"
    finish(spawn("catch-up", dsn, schema, 500, 0), 60)
    with PostgresEventStore(dsn, schema=schema) as store:
        with PostgresReadModel(store) as model:
            resumed = dict(model.query("SELECT id, balance FROM balances"))
            assert model.load_checkpoint("balances") == head
        with PostgresReadModel(dsn, schema=fresh) as other:
            manager = ProjectionManager(store)
            manager.register(Balances(), read_model=other)
            manager.catch_up()
            rebuilt = dict(other.query("SELECT id, balance FROM balances"))
    assert resumed == rebuilt
    assert rebuilt == {f"acc-{a}": 5050 for a in range(ACCOUNTS)}


# -- the children ------------------------------------------------------------------------
def run_writer(dsn: str, schema: str, writer: str, count: str) -> None:
    with PostgresEventStore(dsn, schema=schema, pool_size=2) as store:
        for i in range(int(count)):
            account = f"acc-{(int(writer) * 7 + i) % ACCOUNTS}"
            for _ in range(100):
                try:
                    store.append(
                        account,
                        "Account",
                        store.stream_version(account),
                        [NewEvent(new_event_id(), "Deposited", f"{writer}:{i}".encode())],
                        command_id=f"w{writer}-{i}",
                    )
                    break
                except Exception as exc:  # a concurrent writer took the version: retry
                    if type(exc).__name__ != "ConcurrencyError":
                        raise
            else:
                raise SystemExit(f"writer {writer} gave up on command {i}")


def run_catch_up(dsn: str, schema: str, batch: str, delay: str) -> None:
    with PostgresEventStore(dsn, schema=schema) as store, PostgresReadModel(store) as model:
        manager = ProjectionManager(store, batch_size=int(batch))
        manager.register(Balances(delay=float(delay)), read_model=model)
        manager.catch_up()
        info = manager.status("balances")
        if info.status is not ProjectionStatus.READY:
            raise SystemExit(f"runner ended {info.status}: {info.last_error}")


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    {"write": run_writer, "catch-up": run_catch_up}[role](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
