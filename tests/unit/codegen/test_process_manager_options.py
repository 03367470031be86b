"""The process_manager option: what it generates, and an error naming the place and the fix for
every way to get it wrong."""

from __future__ import annotations

import pytest

from eventstore.codegen import ModelError, generate_module

from .conftest import proto_text

ACCOUNT = [
    "message Account {",  # line 4
    "  option (eventsourcing.aggregate_root).id_field = 'id';",
    "  string id = 1;",
    "}",
    "message Paid { option (eventsourcing.event).aggregate_name = 'Account'; int64 amount = 1; }",
    "message Refunded { option (eventsourcing.event).aggregate_name = 'Account'; }",
    "message PayCommand { string id = 1; }",  # line 10
]


def manager(option: str, *more: str) -> str:
    """The account domain, then a process state with ``option`` on line 12."""
    return proto_text(*ACCOUNT, "message BillingState {", f"  option {option};", *more, "}")


def model_error(text: str) -> ModelError:
    with pytest.raises(ModelError) as caught:
        generate_module(text, name="dom")
    return caught.value


def test_the_name_defaults_to_the_state_message_without_state() -> None:
    m = generate_module(manager("(eventsourcing.process_manager).events = 'Paid'"), name="dom")
    assert m.BillingProcessManager.name == "Billing"
    assert m.BillingProcessManager.event_types == (m.Paid,)
    assert dict(m.BillingProcessManager.event_handlers) == {"t.v1.Paid": "on_paid"}


def test_events_are_named_simply_or_fully_and_the_name_gives_the_class() -> None:
    m = generate_module(
        manager("(eventsourcing.process_manager) = {name: 'refunds' events: ['t.v1.Refunded']}"),
        name="dom",
    )
    assert m.RefundsProcessManager.name == "refunds"
    assert m.RefundsProcessManager.event_types == (m.Refunded,)


def test_an_unknown_event_is_an_error_listing_the_events() -> None:
    error = model_error(manager("(eventsourcing.process_manager).events = 'Payed'"))
    assert (error.file, error.line) == ("dom.proto", 12)
    assert error.element == "t.v1.BillingState"
    assert "process_manager option on 'BillingState' names event 'Payed'" in error.message
    assert "not an event of the files given to the generator" in error.message
    assert "(events: t.v1.Paid, t.v1.Refunded)" in error.message


def test_a_message_that_is_not_an_event_is_an_error_saying_how_to_mark_it() -> None:
    error = model_error(manager("(eventsourcing.process_manager).events = 'PayCommand'"))
    assert "names event 'PayCommand', which is a message but not an event" in error.message
    assert "option (eventsourcing.event).aggregate_name" in error.message


def test_no_events_is_an_error() -> None:
    error = model_error(manager("(eventsourcing.process_manager).name = 'billing'"))
    assert "names no events; list the events it reacts to" in error.message


def test_an_event_listed_twice_is_an_error() -> None:
    error = model_error(
        manager("(eventsourcing.process_manager) = {events: ['Paid', 't.v1.Paid']}")
    )
    assert "names event 't.v1.Paid' twice" in error.message


def test_an_event_name_two_packages_share_must_be_written_in_full() -> None:
    other = proto_text(
        "message Other { option (eventsourcing.aggregate_root).id_field = 'id'; string id = 1; }",
        "message Paid { option (eventsourcing.event).aggregate_name = 'Other'; }",
    ).replace("package t.v1;", "package o.v1;")
    main = manager("(eventsourcing.process_manager).events = 'Paid'").replace(
        'import "eventsourcing/options.proto";',
        'import "eventsourcing/options.proto";\nimport "other.proto";',
    )
    with pytest.raises(ModelError) as caught:
        generate_module({"dom.proto": main, "other.proto": other}, name="dom")
    text = str(caught.value)  # every problem: the two PAID constants, then the option
    assert "names event 'Paid', which more than one event is called (o.v1.Paid, t.v1.Paid)" in text
    assert "name it by its full name" in text


def test_a_state_that_is_also_an_aggregate_is_an_error() -> None:
    error = model_error(
        proto_text(
            "message Account {",
            "  option (eventsourcing.aggregate_root).id_field = 'id';",
            "  option (eventsourcing.process_manager).events = 'Paid';",
            "  string id = 1;",
            "}",
            "message Paid { option (eventsourcing.event).aggregate_name = 'Account'; }",
        )
    )
    assert "Account is also an aggregate's state" in error.message
    assert error.line == 4


def test_a_name_that_gives_no_class_name_is_an_error() -> None:
    error = model_error(
        manager("(eventsourcing.process_manager) = {name: 'pay-outs' events: ['Paid']}")
    )
    assert "names the process manager 'pay-outs', which gives no class name" in error.message


def test_an_event_whose_handler_is_a_method_of_every_manager_is_an_error() -> None:
    error = model_error(
        proto_text(
            *ACCOUNT,
            "message Timeout { option (eventsourcing.event).aggregate_name = 'Account'; }",
            "message BillingState {",
            "  option (eventsourcing.process_manager).events = 'Timeout';",
            "}",
        )
    )
    assert "event t.v1.Timeout would get the handler on_timeout" in error.message
    assert "a method every process manager has; rename the event message" in error.message


def test_two_managers_of_one_name_are_an_error() -> None:
    error = model_error(
        manager(
            "(eventsourcing.process_manager) = {name: 'billing' events: ['Paid']}",
        )
        + "message OtherState { option (eventsourcing.process_manager) = "
        "{name: 'billing' events: ['Paid']}; }\n"
    )
    assert "process manager 'billing' is declared twice" in error.message
    assert "t.v1.OtherState and by t.v1.BillingState" in error.message


def test_a_message_named_like_the_generated_class_is_an_error() -> None:
    error = model_error(
        manager("(eventsourcing.process_manager).events = 'Paid'")
        + "message BillingProcessManager { string a = 1; }\n"
    )
    assert "message t.v1.BillingProcessManager is named like the generated" in error.message
    assert "the process manager Billing (its name)" in error.message
