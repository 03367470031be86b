"""Names the model resolves across packages, and errors that do not cascade.

Two packages may each declare a service or a state message of one name; the files
(``eventstore generate``, the plugin) and the in-process module agree on what that
gives, and an ambiguous name is an error that says so. A refused ``aggregate_root``
option is the one error shown, not followed by one per event or service naming it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from eventstore.cli import generate
from eventstore.codegen import CodegenError, ModelError, generate_module
from eventstore.core.transport import InProcessTransport, RequestContext


def errors_of(sources: dict[str, str], name: str) -> ModelError:
    with pytest.raises(ModelError) as caught:
        generate_module(sources, name=name)
    return caught.value


# -- two packages, one service name -------------------------------------------------------
NOTIFY_V1 = """\
syntax = "proto3";
package notify.v1;
message SendRequest { string to = 1; }
message SendReply { string via = 1; }
service NotificationService { rpc Send(SendRequest) returns (SendReply); }
"""
NOTIFY_V2 = NOTIFY_V1.replace("notify.v1", "notify.v2").replace("rpc Send(", "rpc SendV2(")
NOTIFY = {"notify/v1/api.proto": NOTIFY_V1, "notify/v2/api.proto": NOTIFY_V2}


def test_services_of_one_name_in_two_packages_get_aliased_classes_in_process() -> None:
    module = generate_module(NOTIFY, name="notify_versions")
    for package in ("notify_v1", "notify_v2"):
        assert f"{package}_NotificationServiceHandler" in module.__all__
        assert f"{package}_NotificationServiceServer" in module.__all__
    assert module.notify_v1_NotificationServiceServer.service == "notify.v1.NotificationService"
    assert module.notify_v2_NotificationServiceServer.service == "notify.v2.NotificationService"
    assert "NotificationServiceHandler" not in module.__all__


def test_aliased_servers_each_serve_their_own_package_through_one_sdk() -> None:
    module = generate_module(NOTIFY, name="notify_served")

    class V1Handler:
        def send(self, request: Any, ctx: RequestContext) -> Any:
            return module.notify_v1_SendReply(via=f"v1:{request.to}")

    class V2Handler:
        def send_v2(self, request: Any, ctx: RequestContext) -> Any:
            return module.notify_v2_SendReply(via=f"v2:{request.to}")

    transport = InProcessTransport(
        module.notify_v1_NotificationServiceServer(V1Handler()),
        module.notify_v2_NotificationServiceServer(V2Handler()),
    )
    sdk = module.SDK(transport)

    async def calls() -> tuple[str, str]:
        first = await sdk.notification_service.send(module.notify_v1_SendRequest(to="a"))
        second = await sdk.notification_service.send_v2(module.notify_v2_SendRequest(to="b"))
        return first.via, second.via

    assert asyncio.run(calls()) == ("v1:a", "v2:b")


def test_the_cli_accepts_the_same_services_and_keeps_their_plain_names(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    for name, text in NOTIFY.items():
        (protos / name).parent.mkdir(parents=True, exist_ok=True)
        (protos / name).write_text(text)
    generate(protos, tmp_path / "out")
    for version in ("v1", "v2"):
        text = (tmp_path / "out" / "notify" / version / "api_es.py").read_text()
        assert "class NotificationServiceHandler(_t.Protocol):" in text
    assert (tmp_path / "out" / "es_sdk.py").exists()


def test_aliased_service_classes_that_still_clash_name_both_services_and_where_each_is() -> None:
    # a_b.c.Svc and a.b_c.Svc both alias to a_b_c_Svc: an error naming both in full.
    head = 'syntax = "proto3";\npackage {};\nimport "google/protobuf/empty.proto";\n'
    rpc = "rpc {}(google.protobuf.Empty) returns (google.protobuf.Empty);"
    error = errors_of(
        {
            "one.proto": head.format("a_b.c") + f"service Svc {{ {rpc.format('Ping')} }}\n",
            "two.proto": head.format("a.b_c") + f"service Svc {{ {rpc.format('Pong')} }}\n",
        },
        "clashing_aliases",
    )
    first = error.diagnostics[0]
    assert (first.file, first.line, first.column) == ("one.proto", 4, 1)
    assert "the class a_b_c_SvcHandler of service a_b.c.Svc" in first.message
    assert "the class a_b_c_SvcHandler of service a.b_c.Svc (two.proto:4:1)" in first.message
    assert first.message.endswith("rename the service a_b.c.Svc")


# -- two packages, one state message name ---------------------------------------------------
BILLING = """\
syntax = "proto3";
package billing.v1;
import "eventsourcing/options.proto";
message AccountState {
  option (eventsourcing.aggregate_root) = { id_field: "id_" type_name: "BillingAccount" };
  string id_ = 1;
}
"""
CRM_HEAD = """\
syntax = "proto3";
package crm.v1;
import "eventsourcing/options.proto";
message AccountState {
  option (eventsourcing.aggregate_root) = { id_field: "id_" type_name: "CrmAccount" };
  string id_ = 1;
}
message OpenCommand { string id_ = 1; }
message Ack {}
"""
SHARED = "which more than one aggregate's state message is called "
BOTH = "(billing.v1.AccountState, crm.v1.AccountState)"


def crm(*lines: str) -> dict[str, str]:
    return {"billing.proto": BILLING, "crm.proto": CRM_HEAD + "\n".join(lines) + "\n"}


def test_an_event_naming_a_state_message_two_packages_share_says_it_is_ambiguous() -> None:
    error = errors_of(
        crm("message Opened { option (eventsourcing.event).aggregate_name = 'AccountState'; }"),
        "ambiguous_event",
    )
    assert [(d.file, d.line) for d in error.diagnostics] == [("crm.proto", 10)]
    assert f"names aggregate_name 'AccountState', {SHARED}{BOTH}" in error.message
    assert "name it by its full name or by its type_name" in error.message


@pytest.mark.parametrize("field", ["aggregate_name", "aggregate_root_message"])
def test_a_service_option_naming_a_shared_state_message_says_it_is_ambiguous(field: str) -> None:
    error = errors_of(
        crm(
            f"service Ops {{ option (eventsourcing.service).{field} = 'AccountState';",
            "  rpc Open(OpenCommand) returns (Ack); }",
        ),
        f"ambiguous_{field}",
    )
    assert [(d.file, d.line) for d in error.diagnostics] == [("crm.proto", 10)]
    assert f"names {field} 'AccountState', {SHARED}{BOTH}; name it by its full name" in (
        error.message
    )


def test_a_service_bound_by_a_shared_state_message_name_is_an_error_not_unbound() -> None:
    error = errors_of(
        crm("service AccountStateCommandService { rpc Open(OpenCommand) returns (Ack); }"),
        "ambiguous_by_name",
    )
    assert (error.file, error.line, error.column) == ("crm.proto", 10, 1)
    assert error.element == "crm.v1.AccountStateCommandService"
    assert f"is bound by its name to 'AccountState', {SHARED}{BOTH}" in error.message
    assert "(eventsourcing.service).aggregate_name" in error.message


def test_full_names_and_type_names_pick_one_of_the_shared_state_messages() -> None:
    module = generate_module(
        crm(
            "message Opened { option (eventsourcing.event).aggregate_name = "
            "'crm.v1.AccountState'; }",
            "service Ops { option (eventsourcing.service).aggregate_root_message = "
            "'.crm.v1.AccountState'; rpc Open(OpenCommand) returns (Ack); }",
            "service Billing { option (eventsourcing.service).aggregate_name = "
            "'BillingAccount'; rpc Close(OpenCommand) returns (Ack); }",
        ),
        name="disambiguated",
    )
    model = module.__es_model__
    crm_account = next(a for a in model.aggregates if a.type_name == "CrmAccount")
    assert [e.full_name for e in crm_account.events] == ["crm.v1.Opened"]
    bound = {s.name: s.aggregate for s in model.services}
    assert bound == {"Ops": "CrmAccount", "Billing": "BillingAccount"}


# -- a refused aggregate_root option --------------------------------------------------------
COUNTER = """\
syntax = "proto3";
package c.v1;
import "eventsourcing/options.proto";
message Counter {
  option (eventsourcing.aggregate_root) = { id_field: "counter_id" };
  int64 counter_id = 1;
}
"""


def test_a_refused_aggregate_is_the_only_error_for_what_names_it() -> None:
    error = errors_of(
        {
            "cascade.proto": COUNTER
            + "\n".join(
                [
                    "message TickedEvent { option (eventsourcing.event).aggregate_name = "
                    "'Counter'; }",
                    "message ResetEvent { option (eventsourcing.event).aggregate_name = "
                    "'c.v1.Counter'; }",
                    "message TickCommand { string counter_id = 1; }",
                    "message Ack {}",
                    "service CounterCommandService { rpc Tick(TickCommand) returns (Ack); }",
                    "service ByName { option (eventsourcing.service).aggregate_name = "
                    "'Counter'; rpc Tock(TickCommand) returns (Ack); }",
                    "service ByState { option (eventsourcing.service).aggregate_root_message "
                    "= 'Counter'; rpc Tack(TickCommand) returns (Ack); }",
                    "message WatchState { option (eventsourcing.process_manager) = "
                    "{ events: ['TickedEvent'] }; string last = 1; }",
                ]
            )
            + "\n"
        },
        "cascade",
    )
    assert [(d.line, d.element) for d in error.diagnostics] == [(5, "c.v1.Counter")]
    assert "names id_field 'counter_id', which is not a single string field" in error.message


@pytest.mark.parametrize(
    "refusal",
    [
        '{ id_field: "nope" }',  # not a field
        '{ type_name: "not an identifier" }',
        "{ snapshot_every: -1 }",
    ],
)
def test_every_kind_of_refused_aggregate_stops_the_cascade(refusal: str) -> None:
    text = COUNTER.replace('{ id_field: "counter_id" }', refusal).replace("int64", "string")
    event = "message TickedEvent { option (eventsourcing.event).aggregate_name = 'Counter'; }"
    error = errors_of({"refused.proto": text + event + "\n"}, "refused_kinds")
    assert len(error.diagnostics) == 1 and error.line == 5


def test_an_event_naming_a_missing_aggregate_when_the_only_one_is_refused_says_so() -> None:
    event = "message LostEvent { option (eventsourcing.event).aggregate_name = 'Nope'; }"
    error = errors_of({"lost.proto": COUNTER + event + "\n"}, "lost")
    assert len(error.diagnostics) == 2
    second = error.diagnostics[1].message
    assert "names aggregate_name 'Nope', which is not an aggregate" in second
    assert "none accepted: the aggregate_root option on Counter is refused" in second
    assert "mark a state message with aggregate_root" not in second


def test_a_second_aggregate_of_one_type_refuses_only_itself() -> None:
    # The duplicate is refused; an event naming its state message is not an error again.
    text = (
        COUNTER.replace("int64", "string")
        + "message Other { option (eventsourcing.aggregate_root) = { id_field: 'id' "
        "type_name: 'Counter' }; string id = 1; }\n"
        + "message OtherEvent { option (eventsourcing.event).aggregate_name = 'Other'; }\n"
    )
    with pytest.raises(CodegenError) as caught:
        generate_module({"dup.proto": text}, name="dup_type")
    assert len(caught.value.diagnostics) == 1
    assert "aggregate type 'Counter' is declared twice" in caught.value.message


def test_a_message_named_annotations_is_bound_in_a_live_module():
    # The source's `from __future__ import annotations` bound the name over the class
    # before the source used it: the aggregate's state_type was the __future__ feature.
    module = generate_module(
        {
            "n/v1/a.proto": 'syntax = "proto3";\npackage n.v1;\n'
            'import "eventsourcing/options.proto";\n'
            "message annotations { option (eventsourcing.aggregate_root) = "
            '{id_field: "id"}; string id = 1; string text = 2; }\n'
            "message Noted { option (eventsourcing.event) = "
            '{aggregate_name: "annotations"}; string text = 1; }\n'
        },
        name="probe2_annotations",
    )
    assert isinstance(module.annotations, type)
    assert module.AnnotationsAggregate.state_type is module.annotations
    assert module.annotations(id="n1", text="t").text == "t"
