"""A method the generator names after an event must not replace one its class inherits: an
event ``ResetEvent`` would make the projection builder's ``on_reset`` its handler, and the
documented rebuild hook ``on_reset(fn(ctx))`` would be gone (a rebuild then counts twice).
Each generated class's inherited names come from one list per runtime base."""

from __future__ import annotations

import pytest

from eventstore.codegen import ModelError, generate_module
from eventstore.codegen.build import (
    CLIENT_MEMBERS,
    PROCESS_MANAGER_MEMBERS,
    PROJECTION_BUILDER_MEMBERS,
)
from eventstore.codegen.runtime import ProjectionBuilder, ServiceClient
from eventstore.core.transport import InProcessTransport

from .conftest import proto_text

COUNTER = [
    "message Counter {",
    "  option (eventsourcing.aggregate_root).id_field = 'counter_id';",
    "  string counter_id = 1;",
    "}",
    "message IncrementedEvent { option (eventsourcing.event).aggregate_name = 'Counter'; }",
]


def model_error(text: str) -> ModelError:
    with pytest.raises(ModelError) as caught:
        generate_module(text, name="tally")
    return caught.value


@pytest.mark.parametrize("event", ["ResetEvent", "Reset"])
def test_event_whose_projection_method_is_the_rebuild_hook_is_an_error_at_the_event(
    event: str,
) -> None:
    error = model_error(
        proto_text(
            *COUNTER,
            f"message {event} {{ option (eventsourcing.event).aggregate_name = 'Counter'; }}",
        )
    )
    assert (error.file, error.line, error.column) == ("tally.proto", 9, 1)
    assert (
        f"event t.v1.{event} would get the projection method CounterProjectionBuilder.on_reset, "
        "which every projection builder has (ProjectionBuilder.on_reset, the rebuild hook); "
        "rename the event message"
    ) == error.message


def test_two_events_with_one_projection_method_are_an_error_at_each() -> None:
    # Foo and FooEvent share the short name foo, so they get on_foo and on_foo_event;
    # FooEventEvent's short name foo_event then gives on_foo_event a second time.
    event = "option (eventsourcing.event).aggregate_name = 'Counter';"
    with pytest.raises(ModelError) as caught:
        generate_module(
            proto_text(
                *COUNTER,
                f"message Foo {{ {event} }}",
                f"message FooEvent {{ {event} }}",
                f"message FooEventEvent {{ {event} }}",
            ),
            name="tally",
        )
    found = [(d.line, d.message) for d in caught.value.diagnostics]
    assert [line for line, _ in found] == [10, 11]
    assert "event t.v1.FooEvent would get the projection method" in found[0][1]
    assert (
        "CounterProjectionBuilder.on_foo_event, which another of its events gets too"
        in (found[1][1])
    )


def test_builder_members_cover_what_its_init_sets() -> None:
    assert set(vars(ProjectionBuilder("p"))) <= PROJECTION_BUILDER_MEMBERS
    assert {"on_reset", "build", "_on", "event_types"} <= PROJECTION_BUILDER_MEMBERS


def test_client_members_cover_what_its_init_sets() -> None:
    assert set(vars(ServiceClient(InProcessTransport()))) <= CLIENT_MEMBERS
    assert "_call" in CLIENT_MEMBERS


def test_process_manager_members_cover_what_its_init_sets() -> None:
    module = generate_module(
        proto_text(
            *COUNTER,
            "message TallyState {",
            "  option (eventsourcing.process_manager).events = 'IncrementedEvent';",
            "}",
        ),
        name="tally",
    )

    class Tally(module.TallyProcessManager):  # type: ignore[name-defined,misc]
        def on_incremented(self, *args: object) -> None:
            pass

    assert set(vars(Tally())) <= PROCESS_MANAGER_MEMBERS
    assert {"on_timeout", "on_rejected"} <= PROCESS_MANAGER_MEMBERS
