"""The PostgreSQL store beyond the contract suite: commit order, group commit, wake-ups,
migrations, URLs, the read model and the async append (a real server: tests/support/postgres)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

import eventstore
from eventstore import NewEvent, ProjectionContext, SchemaVersionError, StoreURLError, new_event_id
from eventstore.core.errors import StorageError
from eventstore.core.projections import ProjectionManager
from eventstore.postgres import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    PostgresEventStore,
    PostgresReadModel,
)
from eventstore.postgres.schema import SCHEMA_VERSION
from tests.support import postgres


def _event(kind: str = "test.Deposited", data: bytes = b"x") -> NewEvent:
    return NewEvent(new_event_id(), kind, data)


@pytest.fixture
def store():
    with postgres.open_store() as opened:
        yield opened


def test_a_reader_never_sees_a_later_commit_before_an_earlier_position(store):
    """Writer A holds its position open; B commits after it; the reader waits for both."""
    seen: list[list[int]] = []
    with psycopg.connect(store.dsn, autocommit=True, options=f"-c search_path={store.schema}") as a:
        with a.transaction():
            result_a, _ = store.append_on(a, "acc-a", "Account", 0, [_event()])
            position_a = result_a.events[0].position
            b_done = threading.Event()
            b_result = []
            writer_b = threading.Thread(
                target=lambda: (
                    b_result.append(store.append("acc-b", "Account", 0, [_event()])),
                    b_done.set(),
                )
            )
            writer_b.start()
            # B cannot commit while A holds the position lock: readers see neither.
            assert not b_done.wait(0.5)
            seen.append([e.position for e in store.read_all()])
            assert store.read_page(0, limit=10).scanned_to == 0
        writer_b.join(10)
    position_b = b_result[0].events[0].position
    seen.append([e.position for e in store.read_all()])
    assert seen == [[], [position_a, position_b]]
    assert position_b > position_a


def test_sixteen_concurrent_clients_share_commits(store):
    """Group commit, checked by what it does (fewer commits than commands), not by a rate:
    the rate is the benchmark's (`bench.run --only postgres`), since this machine is shared."""
    commits_before, appends_before = store.group_commits, store.grouped_appends

    def command(i: int) -> None:
        store.append(f"acc-{i}", "Account", 0, [_event()], command_id=f"cmd-{i}")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(command, range(800)))
    commits = store.group_commits - commits_before
    grouped = store.grouped_appends - appends_before
    assert grouped == 800, "every append went through a group"
    assert commits <= 800 / 1.5, f"800 appends from 16 clients took {commits} commits"
    assert store.count_events() == 800


def test_a_group_with_a_stored_event_id_commits_the_others_one_by_one(store):
    stored = store.append("acc-0", "Account", 0, [_event()]).events[0]

    def append(i: int) -> object:
        event = NewEvent(stored.event_id if i % 5 == 0 else new_event_id(), "test.E", b"x")
        try:
            return store.append(f"acc-{i + 1}", "Account", 0, [event], command_id=f"c{i}")
        except eventstore.DuplicateEventIdError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(append, range(80)))
    assert sum(isinstance(r, eventstore.DuplicateEventIdError) for r in results) == 16
    assert store.count_events() == 1 + 64


def test_one_failing_append_in_a_group_leaves_the_others_committed(store):
    store.append("taken", "Account", 0, [_event()])

    def append(i: int) -> object:
        try:
            return store.append("taken" if i % 4 == 0 else f"acc-{i}", "Account", 0, [_event()])
        except eventstore.ConcurrencyError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(append, range(64)))
    failed = [r for r in results if isinstance(r, eventstore.ConcurrencyError)]
    assert len(failed) == 16
    assert store.count_events() == 1 + 48
    positions = [e.position for e in store.read_all()]
    assert positions == sorted(set(positions))


def test_append_async_does_not_block_the_event_loop(store):
    async def main() -> tuple[int, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        results = await asyncio.gather(
            *(
                store.append_async(f"acc-{i}", "Account", 0, [_event()], command_id=f"c{i}")
                for i in range(50)
            )
        )
        again = await store.append_async("acc-0", "Account", 0, [_event()], command_id="c0")
        with pytest.raises(eventstore.ConcurrencyError):
            await store.append_async("acc-1", "Account", 0, [_event()])
        assert await store.stream_version_async("acc-1") == 1
        assert len(await store.load_stream_async("acc-1")) == 1
        assert (await store.find_command_async("c2", "acc-2")).already_processed
        stop.set()
        await task
        assert again.already_processed
        return len(results), ticks

    appended, ticks = asyncio.run(main())
    assert appended == 50
    assert ticks > 50, "the loop ran other tasks while the appends committed"


def test_a_commit_in_another_store_object_wakes_a_follower_through_notify(store):
    with PostgresEventStore(store.dsn, schema=store.schema) as other:
        with store.follow(poll_interval=30) as subscription:
            iterator = iter(subscription)
            time.sleep(0.3)  # the LISTEN connection is up
            started = time.monotonic()
            other.append("acc-1", "Account", 0, [_event()])
            event = next(iterator)
            assert event.aggregate_id == "acc-1"
            assert time.monotonic() - started < 5, "woken by NOTIFY, not by the 30 s poll"


def test_a_follower_still_gets_events_by_polling_when_notifications_are_lost(store):
    with PostgresEventStore(store.dsn, schema=store.schema) as other:
        with store.follow(poll_interval=0.1) as subscription:
            iterator = iter(subscription)
            time.sleep(0.3)
            with psycopg.connect(store.dsn, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
                ).fetchall()
            assert killed
            other.append("acc-1", "Account", 0, [_event()])
            assert next(iterator).aggregate_id == "acc-1"


def test_two_stores_migrating_a_new_schema_at_once_both_open_it():
    schema = postgres.fresh_schema()
    dsn = postgres.server_dsn()
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            PostgresEventStore(dsn, schema=schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f"SELECT version FROM {schema}.schema_version").fetchall()
        assert found == [(SCHEMA_VERSION,)]


def test_a_schema_written_by_a_newer_version_is_refused(store):
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {store.schema}.schema_version SET version = 99")
    with pytest.raises(SchemaVersionError) as caught:
        PostgresEventStore(store.dsn, schema=store.schema)
    assert store.schema in str(caught.value)


def test_open_store_opens_a_postgresql_url_with_its_schema(store):
    store.append("acc-1", "Account", 0, [_event()])
    url = store.dsn + ("&" if "?" in store.dsn else "?") + f"schema={store.schema}&pool_size=2"
    with eventstore.open_store(url) as opened:
        assert isinstance(opened, PostgresEventStore)
        assert opened.stream_version("acc-1") == 1
    with pytest.raises(StoreURLError, match="pool_size"):
        eventstore.open_store(store.dsn + "?pool_size=many")


def test_a_server_that_is_not_there_is_a_storage_error_naming_it():
    with pytest.raises(StorageError) as caught:
        PostgresEventStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
    assert "127.0.0.1:1/none" in str(caught.value) and "password" not in str(caught.value)


def test_libpq_parameters_of_the_url_are_kept_beside_the_stores_own(store):
    # options and connect_timeout of the URL used to be replaced by the store's own.
    url = (
        store.dsn
        + ("&" if "?" in store.dsn else "?")
        + f"schema={store.schema}&options=-c%20statement_timeout%3D1234&connect_timeout=3"
    )
    with eventstore.open_store(url) as opened:
        with opened.reading() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1234ms"
            assert conn.execute("SHOW search_path").fetchone()[0] == store.schema
        assert opened._kwargs["connect_timeout"] == 3


@pytest.mark.parametrize("dsn", ["host=127.0.0.1 port", "postgresql://x@127.0.0.1:1/x?foo=bar"])
def test_a_dsn_libpq_cannot_read_is_a_store_url_error_saying_what_to_give(dsn):
    with pytest.raises(StoreURLError, match="libpq cannot read it.*Give postgresql://"):
        PostgresEventStore(dsn)


def _as_role(dsn: str, role: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://{role}@", 1)


def test_an_application_role_with_the_documented_rights_opens_an_up_to_date_schema(store):
    # CREATE ... IF NOT EXISTS needs the CREATE privilege even when the thing exists.
    assert store.dsn.startswith("postgresql://postgres@"), "the test server's superuser"
    role, schema = f"app_{store.schema}", store.schema
    store.append("acc-1", "Account", 0, [_event()])
    with psycopg.connect(store.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        admin.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
        )
        admin.execute(f"GRANT USAGE, UPDATE ON {schema}.events_position_seq TO {role}")
    try:
        with PostgresEventStore(_as_role(store.dsn, role), schema=schema) as app:
            app.append("acc-1", "Account", 1, [_event()])
            assert app.stream_version("acc-1") == 2
        with pytest.raises(StorageError, match="may not create eventstore's tables.*Permissions"):
            PostgresEventStore(_as_role(store.dsn, role), schema=f"{schema}_new")
    finally:
        with psycopg.connect(store.dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize(
    ("tables", "found"),
    [
        (["CREATE TABLE {s}.events (id INTEGER)"], "tables events"),
        (
            [
                "CREATE TABLE {s}.schema_version (version TEXT)",
                "INSERT INTO {s}.schema_version VALUES ('2024_01_01')",
            ],
            "a schema_version of '2024_01_01'",
        ),
    ],
)
def test_a_schema_of_another_application_is_refused_naming_what_it_holds(store, tables, found):
    from eventstore.core.errors import ForeignDatabaseError

    schema = f"{store.schema}_other"
    with psycopg.connect(store.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        for statement in tables:
            admin.execute(statement.format(s=schema))
    try:
        with pytest.raises(ForeignDatabaseError, match="another application's") as caught:
            PostgresEventStore(store.dsn, schema=schema)
        assert caught.value.found == found and "?schema=NAME" in str(caught.value)
    finally:
        with psycopg.connect(store.dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_after_a_server_restart_reads_fail_at_most_once_as_storage_errors_and_appends_go_on():
    with EmbeddedPostgres(fsync=False) as server:
        store = PostgresEventStore(server.dsn, pool_size=3)
        try:
            store.append("acc-1", "Account", 0, [_event()])
            with ThreadPoolExecutor(3) as pool:  # three pooled connections in use
                list(pool.map(lambda _: store.stream_version("acc-1"), range(30)))
            server.restart()
            # The writer's connection died with the server: nothing of the next group
            # was sent, so it runs again on a new connection instead of failing.
            assert store.append("acc-1", "Account", 1, [_event()]).events[0].version == 2
            failures = []
            for _ in range(6):
                try:
                    assert store.stream_version("acc-1") == 2
                except StorageError as exc:  # never psycopg's AdminShutdown
                    failures.append(exc)
            assert len(failures) <= 1
            assert all("Retry" in str(f) for f in failures)
        finally:
            store.close()


def test_a_closed_store_refuses_reads_and_appends(store):
    store.close()
    with pytest.raises(eventstore.StoreClosedError):
        store.head_position()
    with pytest.raises(eventstore.StoreClosedError):
        store.append("acc-1", "Account", 0, [_event()])


def test_a_wrong_schema_name_or_pool_size_is_refused():
    with pytest.raises(ValueError, match="schema"):
        PostgresEventStore("postgresql://x@127.0.0.1:1/x", schema="Bad Name")
    with pytest.raises(ValueError, match="pool_size"):
        PostgresEventStore("postgresql://x@127.0.0.1:1/x", pool_size=0)


def test_an_embedded_server_not_started_has_no_dsn():
    server = EmbeddedPostgres()
    assert "stopped" in repr(server)
    with pytest.raises(EmbeddedPostgresError, match="start"):
        server.dsn  # noqa: B018


class Totals:
    """Totals per aggregate; a Deposited event of 'echo' appends an Echoed event via ctx.store."""

    name = "totals"

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS totals (id TEXT PRIMARY KEY, n INT)")
        ctx.connection.execute("DELETE FROM totals")

    def handle(self, event, ctx: ProjectionContext) -> None:
        if event.data == b"boom":
            raise RuntimeError("boom")
        ctx.connection.execute(
            "INSERT INTO totals VALUES (%s, 1) ON CONFLICT (id) DO UPDATE SET n = totals.n + 1",
            (event.aggregate_id,),
        )
        if event.aggregate_id == "echo" and event.event_type == "test.Deposited":
            ctx.store.append(
                f"echoed-{event.version}",
                "Echo",
                0,
                [_event("test.Echoed")],
                command_id=f"echo-{event.event_id}",
            )


def test_a_read_model_keeps_rows_checkpoint_and_handler_appends_in_one_transaction(store):
    store.append("echo", "Account", 0, [_event(), _event()])
    store.append("acc-1", "Account", 0, [_event()])
    with PostgresReadModel(store) as model:
        manager = ProjectionManager(store)
        manager.register(Totals(), read_model=model)
        manager.catch_up()
        manager.catch_up()  # the events its handlers appended
        rows = dict(model.query("SELECT id, n FROM totals"))
        assert rows == {"echo": 2, "acc-1": 1, "echoed-1": 1, "echoed-2": 1}
        assert model.load_checkpoint("totals") == store.head_position()
        # A failing handler rolls back its batch: rows, appends and checkpoint.
        store.append("echo", "Account", 2, [_event(data=b"boom")])
        before = store.count_events()
        manager.catch_up()
        assert store.count_events() == before
        assert model.load_checkpoint("totals") < store.head_position()
        manager.rebuild("totals")
        assert dict(model.query("SELECT id, n FROM totals")) != {}


class Pairs:
    """Appends a unit of two streams from its handler, through ctx.store.append_many."""

    name = "pairs"

    def reset(self, ctx: ProjectionContext) -> None:
        pass

    def handle(self, event, ctx: ProjectionContext) -> None:
        from eventstore import StreamAppend

        sides = [f"{side}-{event.aggregate_id}" for side in ("left", "right")]
        ctx.store.append_many(
            [StreamAppend(s, "Pair", 0, [_event("test.Paired")]) for s in sides],
            command_id=f"pair-{event.event_id}",
        )
        if event.data == b"boom":
            raise RuntimeError("boom")


def test_a_handler_appends_a_unit_with_its_batch(store):
    store.append("a", "Account", 0, [_event()])
    with PostgresReadModel(store) as model:
        manager = ProjectionManager(store)
        manager.register(Pairs(), read_model=model, event_types=["test.Deposited"])
        manager.catch_up()
        assert [store.stream_version(s) for s in ("left-a", "right-a")] == [1, 1]
        # A failing handler rolls back its batch, the unit it appended with it.
        store.append("b", "Account", 0, [_event(data=b"boom")])
        before = store.count_events()
        manager.catch_up()
        assert store.count_events() == before
        assert [store.stream_version(s) for s in ("left-b", "right-b")] == [0, 0]


def test_a_read_model_in_another_database_keeps_its_own_checkpoints(store):
    store.append("acc-1", "Account", 0, [_event(), _event()])
    with PostgresReadModel(store.dsn, schema=postgres.fresh_schema()) as model:
        manager = ProjectionManager(store)
        manager.register(Totals(), read_model=model)
        manager.catch_up()
        assert model.query("SELECT id, n FROM totals") == [("acc-1", 2)]
        assert model.load_checkpoint("totals") == store.head_position()
        assert store.load_checkpoint("totals") == 0


def test_without_the_wheel_the_system_binaries_serve_or_the_error_says_what_to_install(
    monkeypatch, tmp_path
):
    import importlib.util
    import shutil

    from eventstore.postgres import embedded

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    if shutil.which("initdb") or shutil.which("pg_config"):
        # Not under pytest's basetemp: every pytest run (a concurrent one included) resets
        # /tmp/pytest-of-<user> to 0700, which would lock the service user out mid-test.
        import tempfile

        with tempfile.TemporaryDirectory(prefix="eventstore-pg-test-") as base:
            with EmbeddedPostgres(base_dir=base) as pg:
                assert not str(embedded.find_binaries()).startswith(base)
                with psycopg.connect(pg.dsn) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
            assert os.listdir(base) == [], "the data folder is removed"
    else:
        monkeypatch.setenv("PATH", "")
        with pytest.raises(EmbeddedPostgresError, match="eventstore\\[postgres\\]"):
            embedded.find_binaries()


def test_an_append_of_many_events_stores_them_in_version_order_with_rising_positions(store):
    # From _ARRAY_ROWS events on, one insert takes an array per column: its rows must
    # still get positions in version order.
    store.append("small", "Account", 0, [_event() for _ in range(3)])
    events = [NewEvent(new_event_id(), f"test.E{i}", bytes([i])) for i in range(100)]
    result = store.append("big", "Account", 0, events, command_id="many")
    stored = store.load_stream("big")
    assert [e.version for e in stored] == list(range(1, 101))
    assert [e.event_id for e in stored] == [e.event_id for e in events]
    assert [e.data for e in stored] == [bytes([i]) for i in range(100)]
    positions = [e.position for e in stored]
    assert positions == sorted(positions) and len(set(positions)) == 100
    assert [e.position for e in result.events] == positions
    again = store.append("big", "Account", 0, events, command_id="many")
    assert again.already_processed and again.events == result.events
