"""The generated aggregate: state fields as attributes, applier dispatch, snapshots."""

from __future__ import annotations

from types import ModuleType

import pytest

from eventstore import EventDecodeError, EveryNEvents, SQLiteEventStore
from eventstore.codegen import generate_module

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def shop() -> ModuleType:
    return generate_module(paths=[EXAMPLES / "shop" / "shop.proto"], name="shop")


@pytest.fixture(scope="module")
def sub() -> ModuleType:
    files = [
        EXAMPLES / "subscription" / f for f in ("model.proto", "events.proto", "subscription.proto")
    ]
    return generate_module(paths=files, include_paths=[EXAMPLES], name="subs")


class OrderApplier:
    def apply_order_placed_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.customer_id = event.customer_id
        agg.lines.extend(event.lines)

    def apply_order_shipped_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.shipped = True
        agg.state.version += 1


class CustomerApplier:
    def apply_customer_registered_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.name = event.name


class SubscriptionApplier:
    def apply_subscription_started_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.plan = event.plan

    def apply_plan_changed_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.plan = event.to_plan

    def apply_addon_added_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.addons.append(event.addon)

    def apply_usage_recorded_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.usage[event.meter] += event.quantity

    def apply_subscription_cancelled_event(self, agg, event):  # type: ignore[no-untyped-def]
        agg.status = 2


def test_constructor_sets_the_id_field_and_type(shop: ModuleType) -> None:
    order = shop.new_order("o-1", OrderApplier())
    assert (order.id, order.type, order.version) == ("o-1", "Order", 0)
    assert order.order_id == "o-1"
    assert order.state.order_id == "o-1"


def test_raising_an_event_applies_it_at_once(shop: ModuleType) -> None:
    order = shop.new_order("o-1", OrderApplier())
    order.apply_change(shop.OrderPlacedEvent(customer_id="c-9", lines=[shop.OrderState.Line(sku="A")]))
    assert order.customer_id == "c-9"
    assert [line.sku for line in order.lines] == ["A"]
    assert order.version == 1


def test_attribute_writes_reach_the_live_state(sub: ModuleType) -> None:
    agg = sub.new_subscription("s-1", SubscriptionApplier())
    agg.plan = "pro"
    agg.addons.append("support")
    agg.addons.extend(["backup"])
    agg.usage["api"] = 3
    agg.usage["api"] += 1
    agg.billing = sub.BillingAddress(city="Ghent")
    agg.billing.country = "BE"
    state = agg.state
    assert (state.plan, list(state.addons), dict(state.usage)) == (
        "pro",
        ["support", "backup"],
        {"api": 4},
    )
    assert (state.billing.city, state.billing.country) == ("Ghent", "BE")


def test_assigning_a_list_or_dict_replaces_the_field(sub: ModuleType) -> None:
    agg = sub.new_subscription("s-1", SubscriptionApplier())
    agg.addons = ["a", "b"]
    agg.addons = ["c"]
    agg.usage = {"x": 1}
    assert list(agg.state.addons) == ["c"]
    assert dict(agg.state.usage) == {"x": 1}


def test_clashing_field_stays_reachable_through_state(shop: ModuleType) -> None:
    order = shop.new_order("o-1", OrderApplier())
    order.apply_change(shop.OrderShippedEvent(carrier="bpost"))
    assert order.version == 1
    assert order.state.version == 1
    assert "state.version" in shop.OrderAggregate.__doc__


def test_setting_an_unknown_attribute_names_the_fields(shop: ModuleType) -> None:
    customer = shop.new_customer("c-1", CustomerApplier())
    with pytest.raises(AttributeError, match=r"no state field 'nmae' \(fields: customer_id, name"):
        customer.nmae = "typo"


def test_assigning_another_message_as_state_names_both_types(shop: ModuleType) -> None:
    order = shop.new_order("o-1", OrderApplier())
    with pytest.raises(
        TypeError,
        match=r"OrderAggregate\.state must be a shop\.v1\.OrderState message, "
        r"got a shop\.v1\.Customer message\. Assign a shop\.v1\.OrderState message",
    ):
        order.state = shop.Customer(name="x")
    assert order.state.order_id == "o-1"


def test_assigning_a_non_message_as_state_names_what_it_got(shop: ModuleType) -> None:
    order = shop.new_order("o-1", OrderApplier())
    with pytest.raises(TypeError, match=r"got dict \{'order_id': 'o-2'\}"):
        order.state = {"order_id": "o-2"}


def test_assigning_a_state_of_the_right_type_replaces_it(shop: ModuleType) -> None:
    order = shop.new_order("o-1", OrderApplier())
    order.state = shop.OrderState(order_id="o-1", customer_id="c-2")
    assert order.customer_id == "c-2"


def test_applier_missing_a_method_is_refused_at_construction(shop: ModuleType) -> None:
    class Partial:
        def apply_order_placed_event(self, agg, event):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(TypeError, match=r"lacks apply_order_shipped_event.*OrderEventApplier"):
        shop.new_order("o-1", Partial())


def test_an_event_of_another_aggregate_is_refused(shop: ModuleType) -> None:
    order = shop.new_order("o-1", OrderApplier())
    with pytest.raises(TypeError, match=r"cannot apply a shop\.v1\.CustomerRegisteredEvent"):
        order.apply_change(shop.CustomerRegisteredEvent(name="x"))
    assert order.version == 0


def test_repository_round_trip_with_snapshots_on_sqlite(sub: ModuleType, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with SQLiteEventStore(tmp_path / "s.db") as store:
        repo = sub.SubscriptionRepository(store, SubscriptionApplier(), EveryNEvents(2))
        agg = sub.new_subscription("s-1", repo.applier)
        agg.apply_change(sub.SubscriptionStartedEvent(plan="basic"))
        agg.apply_change(sub.AddonAddedEvent(addon="x"))
        agg.apply_change(sub.UsageRecordedEvent(meter="api", quantity=5))
        repo.save(agg)
        assert [s.version for s in store.list_snapshots("s-1")] == [3]
        loaded = repo.load("s-1")
        assert (loaded.plan, list(loaded.addons), dict(loaded.usage)) == (
            "basic",
            ["x"],
            {"api": 5},
        )
        assert loaded.snapshot_version == 3
        assert repo.load("s-1", at_version=1).addons == []


def test_snapshot_every_option_is_the_default_strategy(sub: ModuleType, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with SQLiteEventStore(tmp_path / "s.db") as store:
        repo = sub.SubscriptionRepository(store, SubscriptionApplier())
        assert repo.snapshot_strategy is not None
        assert repo.snapshot_strategy(50, 50) is True
        assert repo.snapshot_strategy(49, 49) is False


def test_schema_key_changes_with_the_state_message_only() -> None:
    def key(state: str, extra: str = "") -> str:
        text = (
            'syntax = "proto3";\nimport "eventsourcing/options.proto";\n'
            "message S { option (eventsourcing.aggregate_root).id_field = 'id'; "
            + state
            + " }\n"
            + extra
        )
        return generate_module(text, name="keys").SAggregate.schema_key

    base = key("string id = 1;")
    assert key("string id = 1;", "message Other {}") == base
    assert key("string id = 1; int32 n = 2;") != base


def test_load_calls_an_apply_event_that_a_subclass_replaces(shop: ModuleType, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    class LoggedOrder(shop.OrderAggregate):  # type: ignore[name-defined, misc]
        def apply_event(self, event):  # type: ignore[no-untyped-def]
            seen.append(event.DESCRIPTOR.name)
            super().apply_event(event)

    with SQLiteEventStore(tmp_path / "s.db") as store:
        repo = shop.OrderRepository(store, OrderApplier())
        order = shop.new_order("o-1", repo.applier)
        order.apply_change(shop.OrderPlacedEvent(customer_id="c-9"))
        order.apply_change(shop.OrderShippedEvent())
        repo.save(order)
        repo.factory = lambda order_id: LoggedOrder(order_id, repo.applier)
        loaded = repo.load("o-1")
    assert seen == ["OrderPlacedEvent", "OrderShippedEvent"]
    assert (loaded.customer_id, loaded.shipped, loaded.version) == ("c-9", True, 2)


def test_unknown_stored_event_type_raises_event_decode_error(shop: ModuleType, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with SQLiteEventStore(tmp_path / "s.db") as store:
        repo = shop.OrderRepository(store, OrderApplier())
        store.append("o-1", "Order", 0, [_new_event("shop.v1.Gone")])
        with pytest.raises(EventDecodeError, match=r"shop\.v1\.Gone"):
            repo.load("o-1")


def _new_event(event_type: str):  # type: ignore[no-untyped-def]
    from eventstore import NewEvent, new_event_id

    return NewEvent(new_event_id(), event_type, b"")
