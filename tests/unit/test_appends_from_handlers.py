"""A projection in the store's file appends from its handler, atomically with its checkpoint."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from eventstore import (
    ConcurrencyError,
    DuplicateEventIdError,
    Event,
    EventStoreError,
    IntegerRangeError,
    NewEvent,
    ProjectionContext,
    deterministic_event_id,
    new_event_id,
)
from eventstore.core.projections import ProjectionManager, ProjectionStatus
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel

ORDERED = "shop.v1.OrderPlacedEvent"
SHIP = "shop.v1.ShipmentRequested"


class Shipping:
    """A process manager: for each order placed, request a shipment (once per order)."""

    name = "shipping"
    event_types = (ORDERED,)

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS handled (position INTEGER)")
        ctx.connection.execute("DELETE FROM handled")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        shipment = f"ship-{event.aggregate_id}"
        command = f"ship:{event.event_id}"
        ctx.store.append(
            shipment,
            "Shipment",
            ctx.store.stream_version(shipment),
            [NewEvent(deterministic_event_id(command, shipment, 0), SHIP, b"")],
            command_id=command,
        )
        ctx.connection.execute("INSERT INTO handled VALUES (?)", (ctx.position,))
        if ctx.position == self.fail_at:
            raise RuntimeError(f"crash after appending at {ctx.position}")


def place_orders(store: SQLiteEventStore, count: int) -> None:
    for i in range(count):
        store.append(f"order-{i}", "Order", 0, [NewEvent(new_event_id(), ORDERED, b"")])


def shipments(store: SQLiteEventStore) -> list[str]:
    return [e.aggregate_id for e in store.read_all(event_types=[SHIP])]


def test_a_handler_appends_through_its_context_in_the_batch_transaction(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        place_orders(store, 3)
        manager = ProjectionManager(store)
        manager.register(Shipping(), read_model=model)
        manager.catch_up()
        assert shipments(store) == ["ship-order-0", "ship-order-1", "ship-order-2"]
        assert model.load_checkpoint("shipping") == 3
        manager.catch_up()  # reads past its own appends, which it does not take
        assert manager.status("shipping").status is ProjectionStatus.READY


def test_a_handler_that_raises_leaves_neither_its_append_nor_the_checkpoint(
    db_path: Path,
) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        place_orders(store, 3)
        manager = ProjectionManager(store)
        manager.register(Shipping(fail_at=2), read_model=model)
        manager.catch_up()
        assert manager.status("shipping").status is ProjectionStatus.FAILED
        assert shipments(store) == ["ship-order-0"]
        assert model.load_checkpoint("shipping") == 1


def test_a_crash_inside_the_batch_leaves_neither_the_append_nor_the_checkpoint(
    db_path: Path,
) -> None:
    with SQLiteEventStore(db_path) as store:
        place_orders(store, 2)
    script = textwrap.dedent(
        f"""
        import os, sys
        from eventstore.core.projections import ProjectionManager
        from eventstore.sqlite import SQLiteEventStore
        from eventstore.sqlite.read_model import SQLiteReadModel
        from tests.unit.test_appends_from_handlers import Shipping

        class Dies(Shipping):
            def handle(self, event, ctx):
                super().handle(event, ctx)
                if ctx.position == 2:
                    os._exit(9)  # the process dies inside the transaction

        store = SQLiteEventStore({str(db_path)!r})
        manager = ProjectionManager(store)
        manager.register(Dies(), read_model=SQLiteReadModel(store))
        manager.catch_up()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, cwd=Path.cwd())
    assert done.returncode == 9
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        assert shipments(store) == []  # both handled in the one batch that never committed
        assert model.load_checkpoint("shipping") == 0
        manager = ProjectionManager(store)
        manager.register(Shipping(), read_model=model)
        manager.catch_up()
        assert shipments(store) == ["ship-order-0", "ship-order-1"]


def test_a_replay_appends_nothing_twice(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        place_orders(store, 3)
        manager = ProjectionManager(store)
        manager.register(Shipping(), read_model=model)
        manager.catch_up()
        manager.rebuild("shipping", show_progress=False)
        assert manager.status("shipping").status is ProjectionStatus.READY
        assert model.query("SELECT COUNT(*) FROM handled") == [(3,)]
        assert len(shipments(store)) == 3


def test_commit_listeners_hear_of_handler_appends_after_the_checkpoint_committed(
    db_path: Path,
) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        place_orders(store, 2)
        heard: list[tuple[int, int]] = []
        other = SQLiteEventStore(db_path)  # another connection: sees committed state only
        store.add_commit_listener(
            lambda head: heard.append((head, other.load_checkpoint("shipping")))
        )
        manager = ProjectionManager(store)
        manager.register(Shipping(), read_model=model)
        manager.catch_up()
        other.close()
        assert heard == [(4, 2)]


def test_a_handler_append_makes_every_check_of_a_normal_append(db_path: Path) -> None:
    outcomes: list[str] = []

    class Checks(Shipping):
        def handle(self, event: Event, ctx: ProjectionContext) -> None:
            super().handle(event, ctx)
            try:  # a stale expected version: refused, and only this append is undone
                ctx.store.append(
                    "ship-order-0", "Shipment", 0, [NewEvent(new_event_id(), SHIP, b"")]
                )
            except ConcurrencyError as exc:
                outcomes.append(f"conflict {exc.expected}->{exc.actual}")
            again = ctx.store.append(  # the same command again: its original result
                f"ship-{event.aggregate_id}",
                "Shipment",
                0,
                [NewEvent(new_event_id(), SHIP, b"")],
                command_id=f"ship:{event.event_id}",
            )
            outcomes.append("already processed" if again.already_processed else "stored twice")
            # A command whose record expired at once is still found by its events' ids.
            quick = NewEvent(deterministic_event_id("quick", "q", 0), SHIP, b"")
            ctx.store.append("q", "Q", 0, [quick], command_id="quick", command_ttl=timedelta(0))
            retry = ctx.store.append("q", "Q", 0, [quick], command_id="quick")
            outcomes.append("expired, found" if retry.already_processed else "expired, twice")
            try:  # the same event id again, without a command id: refused
                ctx.store.append("r", "R", 0, [quick])
            except DuplicateEventIdError:
                outcomes.append("duplicate id")
            try:  # a last version beyond SQLite's integers: refused before any SQL
                ctx.store.append("z", "Z", 2**63 - 1, [NewEvent(new_event_id(), SHIP, b"")])
            except IntegerRangeError as exc:
                outcomes.append(f"out of range: {exc.name}")
            # Reads see this transaction's own appends.
            assert [e.event_id for e in ctx.store.load_stream("q")] == [quick.event_id]
            assert ctx.store.find_command("quick", "q") is not None
            assert ctx.store.head_position() == ctx.store.load_stream("q")[0].position

    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        place_orders(store, 1)
        manager = ProjectionManager(store)
        manager.register(Checks(), read_model=model)
        manager.catch_up()
        assert manager.status("shipping").last_error is None
        assert outcomes == [
            "conflict 0->1",
            "already processed",
            "expired, found",
            "duplicate id",
            "out of range: expected_version",
        ]
        assert shipments(store) == ["ship-order-0", "q"]


def test_ctx_store_of_a_read_model_in_another_file_says_how_to_append(
    db_path: Path, tmp_path: Path
) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(tmp_path / "read.db") as model:
        place_orders(store, 1)
        manager = ProjectionManager(store)
        manager.register(Shipping(), read_model=model)
        manager.catch_up()
        error = manager.status("shipping").last_error
        assert error is not None and error.error_type == EventStoreError.__name__
        assert "SQLiteReadModel(store)" in error.message
        assert not ProjectionContext("p").store


def test_ctx_store_after_its_batch_ended_refuses_to_append(db_path: Path) -> None:
    kept: list[object] = []

    class Keeps(Shipping):
        def handle(self, event: Event, ctx: ProjectionContext) -> None:
            kept.append(ctx.store)

    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        place_orders(store, 1)
        manager = ProjectionManager(store)
        manager.register(Keeps(), read_model=model)
        manager.catch_up()
        assert "ended" in repr(kept[0])
        with pytest.raises(EventStoreError, match="after its batch's transaction ended"):
            kept[0].append("x", "X", 0, [])  # type: ignore[attr-defined]


class PairShipping(Shipping):
    """Appends to two aggregates at once from the handler: a unit inside the batch."""

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        from eventstore import StreamAppend

        command = f"pair:{event.event_id}"
        ctx.store.append_many(
            [
                StreamAppend(
                    f"{side}-{event.aggregate_id}",
                    "Shipment",
                    0,
                    [
                        NewEvent(
                            deterministic_event_id(command, f"{side}-{event.aggregate_id}", 0),
                            SHIP,
                            b"",
                        )
                    ],
                )
                for side in ("left", "right")
            ],
            command_id=command,
        )
        ctx.connection.execute("INSERT INTO handled VALUES (?)", (ctx.position,))
        if ctx.position == self.fail_at:
            raise RuntimeError(f"crash after appending at {ctx.position}")


def test_a_handler_appends_a_unit_with_the_batch(db_path: Path) -> None:
    with SQLiteEventStore(db_path) as store, SQLiteReadModel(store) as model:
        place_orders(store, 3)
        manager = ProjectionManager(store)
        manager.register(PairShipping(fail_at=3), read_model=model)
        manager.catch_up()
        assert shipments(store) == [
            "left-order-0",
            "right-order-0",
            "left-order-1",
            "right-order-1",
        ]
        assert model.load_checkpoint("shipping") == 2
