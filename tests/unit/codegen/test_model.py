"""What the model finds: naming rules, events by option, services by option or name."""

from __future__ import annotations

import pytest

from eventstore.codegen import generate_module
from eventstore.codegen.model import Model
from eventstore.codegen.naming import es_module, pb2_module, snake

from .conftest import proto_text


def model_of(*body: str) -> Model:
    model: Model = generate_module(proto_text(*body), name="m").__es_model__
    return model


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("OrderShipped", "order_shipped"),
        ("AccountOpenedEvent", "account_opened_event"),
        ("HTTPServer", "http_server"),
        ("V2Plan", "v2_plan"),
        ("Ping", "ping"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake(name) == expected


def test_module_names_follow_protoc() -> None:
    assert pb2_module("shop/v1/order-lines.proto") == "shop.v1.order_lines_pb2"
    assert es_module("shop/v1/order-lines.proto") == "shop.v1.order_lines_es"


def test_events_are_found_by_option_whatever_their_name() -> None:
    model = model_of(
        "message Order { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
        "message OrderShipped { option (eventsourcing.event).aggregate_name = 'Order'; }",
        "message SomethingEvent {}",
    )
    (event,) = model.events
    assert event.full_name == "t.v1.OrderShipped"
    assert (event.constant, event.applier_method, event.projection_method) == (
        "ORDER_SHIPPED",
        "apply_order_shipped",
        "on_order_shipped",
    )


def test_projection_method_drops_an_event_suffix() -> None:
    model = model_of(
        "message A { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
        "message OpenedEvent { option (eventsourcing.event).aggregate_name = 'A'; }",
    )
    assert model.events[0].projection_method == "on_opened"
    assert model.events[0].applier_method == "apply_opened_event"


def test_type_name_names_the_generated_classes() -> None:
    mod = generate_module(
        proto_text(
            "message AcctState {",
            "  option (eventsourcing.aggregate_root) = {id_field: 'id' type_name: 'Account'};",
            "  string id = 1;",
            "}",
        ),
        name="m",
    )
    assert mod.AccountAggregate.aggregate_type == "Account"
    assert mod.new_account("a-1", object()).type == "Account"


def test_events_may_name_the_aggregate_by_its_state_message() -> None:
    model = model_of(
        "message AcctState {",
        "  option (eventsourcing.aggregate_root) = {id_field: 'id' type_name: 'Account'};",
        "  string id = 1;",
        "}",
        "message Opened { option (eventsourcing.event).aggregate_name = 'AcctState'; }",
    )
    assert model.events[0].aggregate == "Account"


def test_services_bind_by_option_then_by_name_else_stand_alone() -> None:
    model = model_of(
        "message A { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
        "message Req {}",
        "service Anything { option (eventsourcing.service).aggregate_name = 'A';",
        "  rpc Do(Req) returns (Req); }",
        "service AQueryService { rpc Look(Req) returns (Req); }",
        "service Tools { rpc Hammer(Req) returns (Req); }",
    )
    kinds = {s.name: (s.kind, s.aggregate, s.client_name, s.sdk_attribute) for s in model.services}
    assert kinds == {
        "Anything": ("service", "A", "AClient", "a"),
        "AQueryService": ("query", "A", "AClient", "a"),
        "Tools": ("service", None, "ToolsClient", "tools"),
    }
    assert model.services[0].methods[0].subject == "t.v1.Anything.Do"


def test_one_file_may_hold_several_aggregates() -> None:
    model = model_of(
        "message A { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
        "message B { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
        "message AEv { option (eventsourcing.event).aggregate_name = 'A'; }",
        "message BEv { option (eventsourcing.event).aggregate_name = 'B'; }",
    )
    assert {a.type_name: [e.full_name for e in a.events] for a in model.aggregates} == {
        "A": ["t.v1.AEv"],
        "B": ["t.v1.BEv"],
    }


def test_docstrings_come_from_proto_comments() -> None:
    mod = generate_module(
        proto_text(
            "// Money held for a customer.",
            "message Account { option (eventsourcing.aggregate_root).id_field = 'id';",
            "  string id = 1; }",
            "message Req {}",
            "service AccountCommandService {",
            "  // Freeze the account at once.",
            "  rpc Freeze(Req) returns (Req);",
            "}",
        ),
        name="m",
    )
    assert mod.AccountAggregate.__doc__.startswith("Money held for a customer.")
    assert mod.AccountClient.freeze.__doc__ == "Freeze the account at once."
