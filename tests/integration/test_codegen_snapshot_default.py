"""The aggregate_root option snapshot_every is a default: a generated repository over a
store without snapshots (a handler's ctx.store) is a repository without them."""

from __future__ import annotations

from pathlib import Path

from eventstore import Event, SQLiteEventStore
from eventstore.codegen import generate_module
from eventstore.core.projections import ProjectionManager
from eventstore.sqlite.read_model import SQLiteReadModel

SOURCE = """
syntax = "proto3";
package nursery.v1;
import "eventsourcing/options.proto";
message TrayState {
  option (eventsourcing.aggregate_root) = {id_field: "tray_id" type_name: "Tray" snapshot_every: 2};
  string tray_id = 1;
  int32 seedlings = 2;
}
message SeedSown { option (eventsourcing.event).aggregate_name = "Tray"; int32 count = 1; }
message LabelPrinted { option (eventsourcing.event).aggregate_name = "Tray"; int32 count = 1; }
"""


class TrayApplier:
    def apply_seed_sown(self, tray, event):
        tray.seedlings += event.count

    def apply_label_printed(self, tray, event):
        pass


def test_a_repository_with_snapshot_every_works_on_a_handlers_ctx_store(tmp_path: Path) -> None:
    nursery = generate_module(SOURCE, name="nursery_snapshot_default")

    class Labels:
        name = "labels"
        event_types = ("nursery.v1.SeedSown",)

        def reset(self, ctx):
            pass

        def handle(self, event: Event, ctx):
            repo = nursery.TrayRepository(ctx.store, TrayApplier())
            assert repo.snapshot_strategy is None  # ctx.store keeps no snapshots
            tray = repo.load(event.aggregate_id)
            tray.apply_change(nursery.LabelPrinted(count=tray.seedlings))
            repo.save_with_command(tray, f"label:{event.event_id}")

    with SQLiteEventStore(tmp_path / "n.db") as store:
        repo = nursery.TrayRepository(store, TrayApplier())
        assert repo.snapshot_strategy is not None  # the option's default, where it can apply
        tray = repo.factory("tray-1")
        tray.apply_change(nursery.SeedSown(count=12))
        tray.apply_change(nursery.SeedSown(count=3))
        repo.save(tray)  # version 2: snapshotted by the option's default
        manager = ProjectionManager(store)
        manager.register(Labels(), read_model=SQLiteReadModel(store))
        manager.catch_up()
        (status,) = manager.statuses()
        assert status.last_error is None
        assert [e.event_type.rsplit(".", 1)[1] for e in store.load_stream("tray-1")] == [
            "SeedSown",
            "SeedSown",
            "LabelPrinted",
            "LabelPrinted",
        ]
        assert [s.version for s in store.list_snapshots("tray-1")] == [2]
