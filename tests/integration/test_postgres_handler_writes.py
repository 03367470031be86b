"""A projection handler on a PostgreSQL read model in the store's schema that writes through
the store object instead of ``ctx.store``: told so at once (it used to wait for ever on
the position lock its own batch holds, or commit outside the batch)."""

from __future__ import annotations

import threading

import pytest

from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import ProjectionManager, ProjectionStatus
from eventstore.core.projections.read_models import StoreWriteInBatchError
from eventstore.postgres import PostgresReadModel
from tests.support import postgres

KIND = "pgbatch.v1.Joined"
ECHO = "pgbatch.v1.Echoed"


class Echo:
    name = "echo"
    event_types = (KIND,)

    def __init__(self, store, through_ctx_first: bool) -> None:
        self.store = store
        self.through_ctx_first = through_ctx_first

    def reset(self, ctx: ProjectionContext) -> None:
        pass

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        echo = [NewEvent(new_event_id(), ECHO, b"")]
        if self.through_ctx_first:
            ctx.store.append(f"echo-{event.aggregate_id}", "Echo", 0, echo)
        self.store.append(f"log-{event.aggregate_id}", "Log", 0, echo)


@pytest.mark.parametrize("through_ctx_first", [False, True], ids=["store", "ctx-then-store"])
def test_a_handler_writing_through_the_store_object_is_told_to_use_ctx_store(
    through_ctx_first: bool,
) -> None:
    with postgres.open_store() as store:
        for member in ("a", "b"):
            store.append(member, "Member", 0, [NewEvent(new_event_id(), KIND, b"")])
        manager = ProjectionManager(store)
        manager.register(Echo(store, through_ctx_first), read_model=PostgresReadModel(store))
        done = threading.Event()
        runner = threading.Thread(target=lambda: (manager.catch_up(), done.set()), daemon=True)
        runner.start()
        assert done.wait(20), "catch_up hung: the handler's write waited on its own batch"
        info = manager.status("echo")
        assert info.status is ProjectionStatus.FAILED
        assert info.checkpoint == 0 and store.head_position() == 2  # nothing appended
        assert info.last_error is not None and isinstance(
            info.last_error.error, StoreWriteInBatchError
        )
        assert "ctx.store.append" in str(info.last_error.error)
        # Outside a batch the same thread writes as before.
        store.append("after", "Member", 0, [NewEvent(new_event_id(), KIND, b"")])
        assert store.head_position() > 2
