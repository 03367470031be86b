"""Projections and followers see upcast events, as aggregates do (issue 8, item 4)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import Int64Value

from eventstore import Event, NewEvent, ProjectionContext, Upcasters, new_event_id
from eventstore.codegen import generate_module
from eventstore.core.projections import CheckpointedReadModel, ProjectionManager, projection
from eventstore.sqlite import SQLiteEventStore

PROTO = """
syntax = "proto3";
package counter.v1;
import "eventsourcing/options.proto";

message Counter {
  option (eventsourcing.aggregate_root) = { id_field: "counter_id" };
  string counter_id = 1;
  int64 total = 2;
}

message Added {
  option (eventsourcing.event).aggregate_name = "Counter";
  int64 amount = 1;
}
"""
ADDED = "counter.v1.Added"
ADDED_V1 = "counter.v1.AddedV1"  # stored by an older release: an Int64Value payload


@pytest.fixture(scope="module")
def counter() -> ModuleType:
    return generate_module(PROTO, name="counter")


class Applier:
    def apply_added(self, agg: Any, event: Any) -> None:
        agg.total += event.amount


@pytest.fixture
def upcasters(counter: ModuleType) -> Upcasters:
    ups = Upcasters()
    ups.register(
        ADDED_V1,
        lambda e: e.with_payload(
            ADDED, counter.Added(amount=Int64Value.FromString(e.data).value).SerializeToString()
        ),
        to=ADDED,
    )
    return ups


@pytest.fixture
def store(db_path: Path, counter: ModuleType):  # type: ignore[no-untyped-def]
    """Three AddedV1 of 5 stored, then one Added of 1: the counter stands at 16."""
    with SQLiteEventStore(db_path) as s:
        old = Int64Value(value=5).SerializeToString()
        s.append("c-1", "Counter", 0, [NewEvent(new_event_id(), ADDED_V1, old) for _ in range(3)])
        s.append(
            "c-1",
            "Counter",
            3,
            [NewEvent(new_event_id(), ADDED, counter.Added(amount=1).SerializeToString())],
        )
        yield s


def test_aggregate_and_generated_projection_agree_after_a_migration(
    store: SQLiteEventStore, counter: ModuleType, upcasters: Upcasters
) -> None:
    aggregate = counter.CounterRepository(store, Applier(), upcasters=upcasters).load("c-1")
    totals: dict[str, int] = {}

    def add(event: Any, envelope: Event) -> None:
        totals[envelope.aggregate_id] = totals.get(envelope.aggregate_id, 0) + event.amount

    built = counter.CounterProjectionBuilder("totals", upcasters=upcasters).on_added(add).build()
    manager = ProjectionManager(store)
    manager.register(built, read_model=CheckpointedReadModel())
    manager.catch_up()
    assert aggregate.total == totals["c-1"] == 16
    info = manager.status("totals")
    assert (info.is_ready, info.errors, info.unhandled) == (True, 0, {})


def test_a_manager_with_upcasters_feeds_a_filtered_projection_upcast_events(
    store: SQLiteEventStore, counter: ModuleType, upcasters: Upcasters
) -> None:
    seen: list[tuple[str, int]] = []

    @projection("sums", event_types=[ADDED])
    def sums(event: Event, ctx: ProjectionContext) -> None:
        seen.append((event.event_type, counter.Added.FromString(event.data).amount))

    manager = ProjectionManager(store, upcasters=upcasters)
    manager.register(sums)
    manager.catch_up()
    assert seen == [(ADDED, 5), (ADDED, 5), (ADDED, 5), (ADDED, 1)]


def test_register_takes_upcasters_for_one_projection(
    store: SQLiteEventStore, upcasters: Upcasters
) -> None:
    seen: list[str] = []
    manager = ProjectionManager(store)
    manager.register(
        projection("types", event_types=[ADDED])(lambda e, ctx: seen.append(e.event_type)),
        upcasters=upcasters,
    )
    manager.catch_up()
    assert seen == [ADDED] * 4


def test_a_follower_with_upcasters_yields_upcast_events_of_the_wanted_type(
    store: SQLiteEventStore, upcasters: Upcasters
) -> None:
    with store.follow(0, event_types=[ADDED], upcasters=upcasters) as sub:
        assert [e.event_type for e in sub.next_batch(timeout=0)] == [ADDED] * 4


def test_events_a_generated_projection_has_no_handler_for_are_counted_in_its_status(
    store: SQLiteEventStore, counter: ModuleType
) -> None:
    built = counter.CounterProjectionBuilder("totals").on_added(lambda e, env: None).build()
    manager = ProjectionManager(store)
    manager.register(built, event_types=[ADDED, ADDED_V1])
    manager.catch_up()
    assert manager.status("totals").unhandled == {ADDED_V1: 3}


def test_an_upcaster_without_a_declared_type_is_read_and_filtered_after_upcasting(
    store: SQLiteEventStore, counter: ModuleType
) -> None:
    ups = Upcasters()
    ups.register(ADDED_V1, lambda e: e.with_payload("counter.v1.Other", e.data))
    seen: list[str] = []
    manager = ProjectionManager(store, upcasters=ups)
    manager.register(
        projection("types", event_types=[ADDED])(lambda e, ctx: seen.append(e.event_type))
    )
    manager.catch_up()
    assert seen == [ADDED]
    assert manager.status("types").unhandled == {"counter.v1.Other": 3}


def test_an_upcaster_returning_another_type_than_declared_fails_the_projection_there(
    store: SQLiteEventStore,
) -> None:
    ups = Upcasters()
    ups.register(ADDED_V1, lambda e: e.with_payload("counter.v1.Other", e.data), to=ADDED)
    manager = ProjectionManager(store, upcasters=ups)
    manager.register(projection("types", event_types=[ADDED])(lambda e, ctx: None))
    manager.catch_up()
    info = manager.status("types")
    assert info.last_error is not None and info.last_error.position == 1
    assert "to='counter.v1.Added'" in info.last_error.message
