"""Event upcasters: registered per stored type, chained, never looping forever."""

from __future__ import annotations

import pytest

from eventstore import Event, Upcasters


def _event(event_type: str, data: bytes = b"") -> Event:
    return Event("e-1", "acc-1", "Account", event_type, 1, 1, 0, data)


def _rename(to: str):  # type: ignore[no-untyped-def]
    return lambda e: e.with_payload(to, e.data + to[-2:].encode())


def test_no_upcasters_is_falsy_and_returns_event_unchanged():
    upcasters = Upcasters()
    event = _event("v1")
    assert not upcasters
    assert upcasters.upcast(event) is event


def test_upcaster_changes_type_and_data():
    upcasters = Upcasters()
    upcasters.register("bank.V1", _rename("bank.V2"))
    got = upcasters.upcast(_event("bank.V1", b"x"))
    assert (got.event_type, got.data) == ("bank.V2", b"xV2")


def test_upcasters_chain_until_no_upcaster_matches():
    upcasters = Upcasters()
    upcasters.register("bank.V1", _rename("bank.V2"))
    upcasters.register("bank.V2", _rename("bank.V3"))
    got = upcasters.upcast(_event("bank.V1"))
    assert (got.event_type, got.data) == ("bank.V3", b"V2V3")


def test_register_works_as_a_decorator():
    upcasters = Upcasters()

    @upcasters.register("bank.V1")
    def v1_to_v2(event: Event) -> Event:
        return event.with_payload("bank.V2", event.data)

    assert upcasters.upcast(_event("bank.V1")).event_type == "bank.V2"
    assert v1_to_v2(_event("bank.V1")).event_type == "bank.V2"


def test_other_types_pass_through():
    upcasters = Upcasters()
    upcasters.register("bank.V1", _rename("bank.V2"))
    event = _event("bank.Other")
    assert upcasters.upcast(event) is event


def test_second_upcaster_for_one_type_is_refused():
    upcasters = Upcasters()
    upcasters.register("bank.V1", _rename("bank.V2"))
    with pytest.raises(ValueError, match="already registered"):
        upcasters.register("bank.V1", _rename("bank.V3"))


def test_looping_upcasters_raise_instead_of_hanging():
    upcasters = Upcasters()
    upcasters.register("bank.A", lambda e: e.with_payload("bank.B", e.data))
    upcasters.register("bank.B", lambda e: e.with_payload("bank.A", e.data))
    with pytest.raises(RuntimeError, match="loop"):
        upcasters.upcast(_event("bank.A"))


def test_stored_types_for_follows_declared_chains_to_the_wanted_types():
    upcasters = Upcasters()
    upcasters.register("bank.V1", _rename("bank.V2"), to="bank.V2")
    upcasters.register("bank.V2", _rename("bank.V3"), to="bank.V3")
    upcasters.register("bank.Old", _rename("bank.Other"), to="bank.Other")
    upcasters.register("bank.Unknown", _rename("bank.V3"))  # no to=: might make anything
    assert upcasters.stored_types_for(["bank.V3"]) == [
        "bank.V3",
        "bank.V1",
        "bank.V2",
        "bank.Unknown",
    ]
