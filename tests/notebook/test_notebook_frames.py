"""DataFrames of events, streams, snapshots and checkpoints: dtypes and decoding."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from eventstore import EventTypeRegistry, EveryNEvents, SQLiteEventStore
from eventstore.codegen import generate_module
from eventstore.core.snapshots import Snapshot
from eventstore.core.upcasting import Upcasters
from eventstore.notebook import frames
from eventstore.notebook.messages import message_to_dict
from tests.support.bank import EVENT_TYPES, Account, account_repository, pb

EXPECTED_DTYPES = {
    "position": "int64",
    "timestamp": "datetime64[us, UTC]",
    "aggregate_type": "str",
    "aggregate_id": "str",
    "version": "int64",
    "event_type": "str",
    "payload": "object",
    "decoded": "bool",
    "event_id": "str",
}


def fill(store: SQLiteEventStore) -> None:
    repo = account_repository(store, snapshot_store=store, snapshot_strategy=EveryNEvents(2))
    a = Account("acc-1")
    a.open("Ada", 100)
    a.deposit(5)
    repo.save(a)
    a.withdraw(3)
    a.deposit(7)
    repo.save(a)
    b = Account("acc-2")
    b.open("Bob")
    repo.save(b)


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: str(frame[c].dtype) for c in EXPECTED_DTYPES}


def test_events_frame_columns_have_datetime_int_and_string_dtypes(store):
    fill(store)
    frame = frames.events_frame(store.read_all(), EVENT_TYPES)
    assert dtypes(frame) == EXPECTED_DTYPES
    assert frame["timestamp"].iloc[0] == store.read_all()[0].timestamp


def test_an_empty_events_frame_has_the_same_dtypes(store):
    frame = frames.events_frame([], EVENT_TYPES)
    assert len(frame) == 0
    assert dtypes(frame) == EXPECTED_DTYPES


@pytest.mark.parametrize(
    "types",
    [
        pytest.param(EVENT_TYPES, id="class-list"),
        pytest.param(EventTypeRegistry(EVENT_TYPES), id="registry"),
        pytest.param({c.DESCRIPTOR.full_name: c for c in EVENT_TYPES}, id="mapping"),
    ],
)
def test_payloads_are_decoded_to_dicts_from_any_source_of_classes(store, types):
    fill(store)
    frame = frames.events_frame(store.read_all(), types)
    assert frame["decoded"].all()
    assert frame.loc[0, "payload"] == {"owner": "Ada", "initial_balance": 100}


def test_payloads_decode_through_a_repository(store):
    fill(store)
    frame = frames.events_frame(store.read_all(), account_repository(store))
    assert frame.loc[1, "payload"] == {"amount": 5}


def test_a_payload_of_unknown_type_is_hex_with_decoded_false(store):
    fill(store)
    frame = frames.events_frame(store.read_all(), [pb.AccountOpened])
    withdrawn = frame[frame["event_type"] == "testbank.v1.MoneyWithdrawn"].iloc[0]
    assert not withdrawn["decoded"]
    assert withdrawn["payload"] == pb.MoneyWithdrawn(amount=3).SerializeToString().hex()
    assert frame.loc[0, "decoded"]


def test_expanded_payload_columns_keep_integers_as_integers(store):
    fill(store)
    frame = frames.events_frame(store.read_all(), EVENT_TYPES, expand_payload=True)
    assert str(frame["payload.amount"].dtype) == "Int64"
    assert frame["payload.amount"].dropna().tolist() == [5, 3, 7]


def test_stream_frame_lists_one_aggregate_in_version_order(store):
    fill(store)
    frame = frames.stream_frame(store, "acc-1", EVENT_TYPES)
    assert frame["version"].tolist() == [1, 2, 3, 4]
    assert set(frame["aggregate_id"]) == {"acc-1"}


def test_snapshots_frame_has_versions_sizes_times_and_decoded_state(store):
    fill(store)
    frame = frames.snapshots_frame(store.list_snapshots("acc-1"), pb.AccountState)
    assert frame["version"].tolist() == [2, 4]
    assert str(frame["version"].dtype) == "int64"
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert (frame["size_bytes"] > 0).all()
    assert frame.loc[1, "state"]["balance"] == 109


# -- snapshots of another schema: never decoded with the wrong class -----------------------
PLANT = """
syntax = "proto3";
package greenhouse.{version};
import "eventsourcing/options.proto";

message PlantState {{
  option (eventsourcing.aggregate_root) = {{id_field: "plant_id" type_name: "Plant"}};
  string plant_id = 1;
  int64 {water} = 2;
}}
message PlantWateredEvent {{
  option (eventsourcing.event).aggregate_name = "Plant";
  int64 amount = 1;
}}
"""


class PlantApplier:
    def __init__(self, field: str) -> None:
        self.field = field

    def apply_plant_watered_event(self, agg: Any, event: Any) -> None:
        setattr(agg, self.field, getattr(agg, self.field) + event.amount)


@pytest.fixture(scope="module")
def plants() -> tuple[ModuleType, ModuleType]:
    """Two schemas of one aggregate: v1 keeps millilitres, v2 centilitres (another key)."""
    v1 = generate_module(PLANT.format(version="v1", water="water_ml"), name="frames_plant_v1")
    v2 = generate_module(PLANT.format(version="v2", water="water_cl"), name="frames_plant_v2")
    assert v1.PlantAggregate.schema_key != v2.PlantAggregate.schema_key
    return v1, v2


def water_v1_then_v2(store: SQLiteEventStore, plants: tuple[ModuleType, ModuleType]) -> None:
    """fern: a v1 snapshot at version 1 (750 ml), then a v2 one at version 2 (80 cl)."""
    v1, v2 = plants
    old = v1.PlantRepository(store, PlantApplier("water_ml"))
    plant = old.factory("fern")
    plant.apply_change(v1.PlantWateredEvent(amount=750))
    old.save(plant)
    old.save_snapshot(plant)
    upcasters = Upcasters()  # v1's millilitres become v2's centilitres
    upcasters.register(
        "greenhouse.v1.PlantWateredEvent",
        lambda e: e.with_payload(
            "greenhouse.v2.PlantWateredEvent",
            v2.PlantWateredEvent(
                amount=v1.PlantWateredEvent.FromString(e.data).amount // 10
            ).SerializeToString(),
        ),
        to="greenhouse.v2.PlantWateredEvent",
    )
    new = v2.PlantRepository(store, PlantApplier("water_cl"), upcasters=upcasters)
    plant = new.load("fern")  # ignores the v1 snapshot: replays the upcast event
    plant.apply_change(v2.PlantWateredEvent(amount=5))
    new.save(plant)
    new.save_snapshot(plant)


def test_snapshots_frame_leaves_a_snapshot_of_another_schema_undecoded(store, plants):
    water_v1_then_v2(store, plants)
    v1, v2 = plants
    frame = frames.snapshots_frame(store.list_snapshots("fern"), v2.PlantState)
    assert frame["schema_key"].tolist() == [
        v1.PlantAggregate.schema_key,
        v2.PlantAggregate.schema_key,
    ]
    assert frame["state"].tolist() == [None, {"plant_id": "fern", "water_cl": 80}]
    assert frame["same_schema"].tolist() == [False, True]
    assert str(frame["same_schema"].dtype) == "boolean"


def test_snapshots_frame_takes_the_aggregate_class_for_its_state_and_schema(store, plants):
    water_v1_then_v2(store, plants)
    v1, _ = plants
    frame = frames.snapshots_frame(store.list_snapshots("fern"), v1.PlantAggregate)
    assert frame["state"].tolist() == [{"plant_id": "fern", "water_ml": 750}, None]
    assert frame["same_schema"].tolist() == [True, False]


def test_snapshots_frame_of_a_hand_written_aggregate_checks_the_schema_key_given(store):
    fill(store)
    # A snapshot of an older AccountState shape, stored under another key; its bytes
    # decode as AccountState (field 3, 7) all the same, which is why the key decides.
    store.save_snapshot(Snapshot("acc-1", "Account", 3, "older-shape", b"\x18\x07"))
    snapshots = store.list_snapshots("acc-1")
    frame = frames.snapshots_frame(snapshots, pb.AccountState, schema_key=Account.schema_key)
    assert frame["version"].tolist() == [2, 3, 4]
    assert frame["same_schema"].tolist() == [True, False, True]
    assert frame.loc[1, "state"] is None
    assert frame.loc[2, "state"]["balance"] == 109
    unchecked = frames.snapshots_frame(snapshots, pb.AccountState)  # no key to compare with
    assert unchecked["same_schema"].isna().all()
    assert unchecked.loc[2, "state"]["balance"] == 109


def test_snapshots_frame_refuses_a_state_class_it_cannot_decode_with(store):
    with pytest.raises(TypeError, match="Account has no state_type.*schema_key=Account.schema_key"):
        frames.snapshots_frame([], Account)
    with pytest.raises(TypeError, match="state_class must be the state's message class"):
        frames.snapshots_frame([], "AccountState")  # type: ignore[arg-type]


def test_an_empty_snapshots_frame_has_the_same_dtypes(plants):
    frame = frames.snapshots_frame([], plants[1].PlantState)
    assert list(frame.columns)[-2:] == ["state", "same_schema"]
    assert str(frame["same_schema"].dtype) == "boolean"


def test_checkpoints_frame_shows_each_projection_lag_behind_the_head(store):
    fill(store)
    store.save_checkpoint("balances", 2)
    store.save_checkpoint("owners", 5)
    frame = frames.checkpoints_frame(store)
    assert frame.to_dict("records") == [
        {"projection": "balances", "checkpoint": 2, "head": 5, "lag": 3},
        {"projection": "owners", "checkpoint": 5, "head": 5, "lag": 0},
    ]
    assert str(frame["lag"].dtype) == "int64"


def test_message_to_dict_keeps_int64_as_int_enums_as_names_and_unset_messages_as_none(nbforms):
    msg = nbforms.PlaceOrder(amount_cents=2**40, priority=nbforms.PRIORITY_HIGH, note=b"\x01")
    msg.limits["daily"] = 5
    values = message_to_dict(msg)
    assert values["amount_cents"] == 2**40
    assert values["priority"] == "PRIORITY_HIGH"
    assert values["note"] == "01"
    assert values["shipping"] is None
    assert values["limits"] == {"daily": 5}
    assert values["tags"] == []


def test_time_from_takes_the_timestamp_from_event_metadata():
    import eventstore.datasets

    store, bank, _ = eventstore.datasets.load("bank")
    events = list(store.iter_all())
    frame = frames.events_frame(events, bank.EVENT_TYPES, time_from="recorded_at")
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame.loc[0, "timestamp"] == pd.Timestamp("2026-01-06T13:38:20Z")
    assert frame["timestamp"].max() < pd.Timestamp("2026-04-01T00:00:00Z")


def test_time_from_keeps_the_stored_time_of_events_without_that_key(store):
    fill(store)
    stored = frames.store_events_frame(store)
    frame = frames.store_events_frame(store, time_from="recorded_at")
    assert list(frame["timestamp"]) == list(stored["timestamp"])


def test_columns_keeps_only_those_columns_in_that_order(store):
    fill(store)
    frame = frames.store_events_frame(store, columns=["version", "position"])
    assert list(frame.columns) == ["version", "position"]


def test_an_unknown_column_is_reported_with_the_columns_there_are(store):
    fill(store)
    with pytest.raises(ValueError, match=r"no column 'nope'.*its columns are position, timestamp"):
        frames.store_events_frame(store, columns=["nope"])


def test_a_frame_of_one_tenants_log_holds_only_its_events(tmp_path) -> None:
    from eventstore.tenancy import TenantEventSource, with_tenant

    with SQLiteEventStore(tmp_path / "t.db") as store:
        repo = account_repository(store, tenant_isolation=True)
        for tenant in ("acme", "beta"):
            with with_tenant(tenant):
                account = repo.factory("acc-1")
                account.open(tenant)
                account.deposit(1)
                repo.save(account)
        beta = TenantEventSource(store, "beta")
        log = frames.store_events_frame(beta, types=EVENT_TYPES)
        assert list(log["aggregate_id"]) == ["beta::acc-1"] * 2
        assert list(log["position"]) == [3, 4]
        stream = frames.store_events_frame(beta, "acc-1", event_type="AccountOpened")
        assert list(stream["aggregate_id"]) == ["beta::acc-1"]
        assert len(frames.store_events_frame(store)) == 4  # the store: every tenant's
