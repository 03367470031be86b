"""Generated classes die with their module: re-running a notebook cell does not pile them up."""

from __future__ import annotations

import gc
import sys
import weakref

from eventstore.codegen import generate_module
from eventstore.codegen.live import LIVE_PACKAGE

from .conftest import proto_text

PROTO = proto_text(
    "message Tally { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
    "message Counted { option (eventsourcing.event).aggregate_name = 'Tally'; }",
)


class TallyApplier:
    def apply_counted(self, agg, event):  # type: ignore[no-untyped-def]
        pass


def test_fifty_generations_leave_no_aggregate_class_alive_once_dropped() -> None:
    classes: list[weakref.ref[type]] = []
    for _ in range(50):
        module = generate_module(PROTO, name="lifetime")
        module.new_tally("t-1", TallyApplier())  # checks the applier against the class
        classes.append(weakref.ref(module.TallyAggregate))
        del module
    sys.modules.pop(f"{LIVE_PACKAGE}.lifetime", None)
    gc.collect()
    alive = [ref for ref in classes if ref() is not None]
    assert len(alive) == 0
