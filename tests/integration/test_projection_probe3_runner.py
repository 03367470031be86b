"""The projection runner on real SQLite files: run() outlives an unregistered projection
and ends with a closed store; a closed read model fails its projection, saying so; lag
counts the stored scanned position; unhandled events are counted once."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.errors import StoreClosedError
from eventstore.core.projections import ProjectionManager, ProjectionStatus
from eventstore.core.projections.read_models import ReadModelClosedError
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel

IN, OUT = "probe3.v1.In", "probe3.v1.Out"


def _append(store: SQLiteEventStore, kind: str, count: int = 1) -> None:
    for _ in range(count):
        version = store.stream_version("lot")
        store.append("lot", "Lot", version, [NewEvent(new_event_id(), kind, b"")])


class Rows:
    def __init__(self, name: str, table: str) -> None:
        self.name = name
        self.table = table

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (position INTEGER)")
        ctx.connection.execute(f"DELETE FROM {self.table}")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        ctx.connection.execute(f"INSERT INTO {self.table} VALUES (?)", (ctx.position,))


async def _until(check, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached in time")


def test_run_feeds_the_others_and_a_re_registered_one_after_unregister(tmp_path) -> None:
    asyncio.run(_test_run_feeds_the_others_and_a_re_registered_one_after_unregister(tmp_path))


async def _test_run_feeds_the_others_and_a_re_registered_one_after_unregister(tmp_path) -> None:
    with SQLiteEventStore(tmp_path / "store.db") as store:
        model = SQLiteReadModel(tmp_path / "rm.db")
        manager = ProjectionManager(store)
        manager.register(Rows("cars", "cars"), read_model=model)
        manager.register(Rows("other", "other"), read_model=model)
        task = asyncio.create_task(manager.run("cars", "other", poll_interval=0.05))
        _append(store, IN)
        await _until(lambda: len(model.query("SELECT * FROM cars")) == 1)
        manager.unregister("other")
        _append(store, IN)
        await _until(lambda: len(model.query("SELECT * FROM cars")) == 2)
        manager.register(Rows("other", "other"), read_model=model)
        await _until(lambda: len(model.query("SELECT * FROM other")) == 2)
        assert not task.done()
        manager.stop()
        await asyncio.wait_for(task, 5)
        model.close()


def test_run_ends_with_store_closed_error_once_the_store_is_closed(tmp_path) -> None:
    asyncio.run(_test_run_ends_with_store_closed_error_once_the_store_is_closed(tmp_path))


async def _test_run_ends_with_store_closed_error_once_the_store_is_closed(tmp_path) -> None:
    store = SQLiteEventStore(tmp_path / "store.db")
    model = SQLiteReadModel(tmp_path / "rm.db")
    manager = ProjectionManager(store)
    manager.register(Rows("cars", "cars"), read_model=model)
    _append(store, IN)
    task = asyncio.create_task(manager.run(poll_interval=0.05))
    await _until(lambda: len(model.query("SELECT * FROM cars")) == 1)
    store.close()
    with pytest.raises(StoreClosedError, match="event store"):
        await asyncio.wait_for(task, 5)
    model.close()


def test_a_closed_read_model_fails_its_projection_naming_the_read_model(tmp_path, caplog) -> None:
    asyncio.run(
        _test_a_closed_read_model_fails_its_projection_naming_the_read_model(tmp_path, caplog)
    )


async def _test_a_closed_read_model_fails_its_projection_naming_the_read_model(
    tmp_path, caplog
) -> None:
    with SQLiteEventStore(tmp_path / "store.db") as store:
        model = SQLiteReadModel(tmp_path / "rm.db")
        manager = ProjectionManager(store)
        manager.register(Rows("cars", "cars"), read_model=model)
        _append(store, IN)
        manager.catch_up()
        model.close()
        _append(store, IN)
        task = asyncio.create_task(manager.run(poll_interval=0.05))
        failed = "projection 'cars'"
        # Failed: logged at ERROR (its status() now raises, reading a closed read model).
        await _until(
            lambda: any(r.levelname == "ERROR" and failed in r.getMessage() for r in caplog.records)
        )
        assert not task.done()  # the others would go on being fed
        manager.stop()
        await asyncio.wait_for(task, 5)
        with pytest.raises(ReadModelClosedError, match=r"read model .*make a new SQLiteReadModel"):
            manager.status("cars")
        with pytest.raises(ReadModelClosedError, match="read model"):
            model.load_checkpoint("cars")


def test_a_filtered_projection_scanned_to_the_head_shows_no_lag_after_a_restart(tmp_path) -> None:
    with SQLiteEventStore(tmp_path / "store.db") as store:
        _append(store, OUT, 2)
        _append(store, IN, 30)
        with SQLiteReadModel(tmp_path / "rm.db") as model:
            runner = ProjectionManager(store, batch_size=10)
            runner.register(Rows("exits", "exits"), read_model=model, event_types=[OUT])
            runner.catch_up()
            assert runner.status("exits").lag_positions == 0
            observer = ProjectionManager(store, batch_size=10)  # a restart, or a dashboard
            observer.register(Rows("exits", "exits"), read_model=model, event_types=[OUT])
            info = observer.status("exits")
            assert (info.checkpoint, info.head_position) == (2, 32)
            assert info.lag_positions == 0 and info.lag_seconds == 0.0
            assert info.status is ProjectionStatus.READY


def test_an_unhandled_event_is_counted_once_when_its_batch_is_handled_again(tmp_path) -> None:
    from eventstore.core.upcasting import Upcasters

    with SQLiteEventStore(tmp_path / "store.db") as store:
        _append(store, IN)
        _append(store, OUT, 2)
        with SQLiteReadModel(tmp_path / "rm.db") as model:
            manager = ProjectionManager(store)
            upcasters = Upcasters()
            # Registered without to=: IN events are read (they might become OUT), fed to the
            # runner's upcasting step and counted there as unhandled.
            upcasters.register(IN, lambda event: event.with_payload("probe3.v1.Seen", event.data))
            manager.register(
                Rows("fed", "fed"), read_model=model, event_types=[OUT], upcasters=upcasters
            )
            original = Rows.handle

            def fail_once(self, event, ctx, failed=[]):  # noqa: B006
                if ctx.position == 3 and not failed:
                    failed.append(1)
                    raise RuntimeError("once")
                original(self, event, ctx)

            Rows.handle = fail_once
            try:
                manager.catch_up()
                assert manager.status("fed").status is ProjectionStatus.FAILED
                manager.resume("fed")
                manager.catch_up()
            finally:
                Rows.handle = original
            info = manager.status("fed")
            assert info.status is ProjectionStatus.READY
            assert model.query("SELECT position FROM fed ORDER BY position") == [(2,), (3,)]
            assert info.unhandled == {"probe3.v1.Seen": 1}  # the log holds one IN event
