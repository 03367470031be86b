"""Sample datasets: shipped in the package, self-describing, loaded through generate_module."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

import eventstore.datasets as datasets
from eventstore import (
    ConcurrencyError,
    EventTypeRegistry,
    NewEvent,
    SQLiteEventStore,
    new_event_id,
)
from eventstore.datasets import DatasetError

ROOT = Path(__file__).resolve().parents[2]


def make_datasets() -> ModuleType:
    """datasets/make_datasets.py, imported from its path (datasets/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "make_datasets", ROOT / "datasets" / "make_datasets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_datasets", module)
    spec.loader.exec_module(module)
    return module


def test_available_lists_bank_and_shop():
    assert {"bank", "shop"} <= set(datasets.available())


@pytest.mark.parametrize("name", ["bank", "shop"])
def test_each_dataset_ships_its_proto_beside_its_events(name):
    folder = Path(datasets.__file__).parent / "data" / name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (folder / manifest["proto"]).is_file()
    assert (folder / manifest["events"]).is_file()
    assert datasets.proto_source(name).lstrip().startswith("//")


def test_load_without_a_store_fills_a_new_in_memory_store():
    store, module, summary = datasets.load("bank")
    try:
        assert store.head_position() == summary.events == datasets.info("bank").event_count
        assert summary.first_position == 1 and summary.last_position == summary.events
        assert module.__name__ == "eventstore.codegen.live.bank"
    finally:
        store.close()  # type: ignore[attr-defined]


def test_load_into_a_given_store_returns_that_store(db_path):
    with SQLiteEventStore(db_path) as store:
        loaded = datasets.load("bank", store)
        assert loaded.store is store
        assert store.count_events() == loaded.summary.events


def test_loaded_payloads_decode_with_the_generated_classes(memory_store):
    _, bank, _ = datasets.load("bank", memory_store)
    registry = EventTypeRegistry(
        [bank.AccountOpenedEvent, bank.MoneyDepositedEvent, bank.MoneyWithdrawnEvent]
    )
    first = memory_store.load_stream("acc-001")[0]
    opened = registry.decode(first)
    assert opened.owner == "Ada Lovelace"
    assert first.event_type == "bank.v1.AccountOpenedEvent"


def test_loaded_events_keep_ids_versions_and_metadata_of_the_file(memory_store):
    datasets.load("bank", memory_store)
    record = next(datasets.records("bank"))
    stored = memory_store.load_stream(record["aggregate_id"])[0]
    assert stored.event_id == record["event_id"]
    assert stored.version == record["version"] == 1
    assert stored.metadata.principal_id == record["metadata"]["principal_id"]
    assert stored.metadata.causation_id == record["command_id"]
    assert stored.metadata.custom["recorded_at"] == record["recorded_at"]


def test_events_of_one_command_are_stored_by_one_append(memory_store):
    datasets.load("bank", memory_store)
    closing = [e for e in memory_store.iter_all() if e.event_type == "bank.v1.AccountClosedEvent"]
    assert closing, "the bank story closes accounts"
    stream = memory_store.load_stream(closing[0].aggregate_id)
    withdrawal = stream[-2]
    assert withdrawal.event_type == "bank.v1.MoneyWithdrawnEvent"
    assert withdrawal.metadata.causation_id == closing[0].metadata.causation_id
    assert withdrawal.timestamp_micros == closing[0].timestamp_micros


def test_the_bank_story_never_overdraws_an_account(memory_store):
    _, bank, _ = datasets.load("bank", memory_store)
    registry = EventTypeRegistry(
        [bank.AccountOpenedEvent, bank.MoneyDepositedEvent, bank.MoneyWithdrawnEvent,
         bank.AccountClosedEvent]
    )  # fmt: skip
    balances: dict[str, int] = {}
    for event in memory_store.iter_all():
        message = registry.decode(event)
        if event.event_type.endswith("AccountOpenedEvent"):
            balances[event.aggregate_id] = message.initial_deposit
        elif event.event_type.endswith("MoneyDepositedEvent"):
            balances[event.aggregate_id] += message.amount
        elif event.event_type.endswith("MoneyWithdrawnEvent"):
            balances[event.aggregate_id] -= message.amount
        assert all(b >= 0 for b in balances.values())


def test_summary_counts_aggregates_and_event_types():
    store, _, summary = datasets.load("shop")
    try:
        assert summary.aggregates["Customer"] == 16
        assert sum(summary.event_types.values()) == summary.events
        assert summary.recorded_from.startswith("2026-02")
        assert "dataset 'shop'" in str(summary)
    finally:
        store.close()  # type: ignore[attr-defined]


def test_loading_twice_into_one_store_stores_the_events_once(memory_store):
    first = datasets.load("bank", memory_store).summary
    again = datasets.load("bank", memory_store).summary
    assert memory_store.count_events() == first.events
    # The second summary says what the second load did: it stored nothing.
    assert (again.events, again.already_stored) == (0, first.events)
    assert (again.first_position, again.last_position) == (0, 0)
    assert f"nothing stored: its {first.events} events" in str(again)
    assert first.already_stored == 0 and "already" not in str(first)


def test_loading_over_an_aggregate_of_the_same_id_fails_with_a_concurrency_error(memory_store):
    datasets.load("shop", memory_store)
    memory_store.append("acc-001", "Account", 0, [NewEvent(new_event_id(), "x.Y", b"")])
    with pytest.raises(ConcurrencyError):
        datasets.load("bank", memory_store)


def test_unknown_dataset_names_the_available_ones():
    with pytest.raises(DatasetError, match="available: bank, shop"):
        datasets.load("nope")


def test_module_name_sets_the_generated_module_name(memory_store):
    _, module, _ = datasets.load("bank", memory_store, module_name="ledger")
    assert module.__name__ == "eventstore.codegen.live.ledger"


def test_make_datasets_writes_exactly_the_shipped_files(tmp_path):
    script = make_datasets()
    assert script.main(["--out", str(tmp_path)]) == 0
    shipped = Path(datasets.__file__).parent / "data"
    for name in ("bank", "shop"):
        for file_name in ("events.jsonl", "manifest.json"):
            assert (tmp_path / name / file_name).read_bytes() == (
                shipped / name / file_name
            ).read_bytes(), f"{name}/{file_name} is stale: run datasets/make_datasets.py"


def test_files_written_elsewhere_load_like_the_shipped_ones(tmp_path):
    script = make_datasets()
    script.main(["--out", str(tmp_path)])
    assert (tmp_path / "bank" / "bank.proto").read_text() == datasets.proto_source("bank")
