"""generate_module: a live module in process, fresh every run, nothing on disk."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from eventstore import EventTypeRegistry
from eventstore.codegen import Model, generate_module

from .conftest import EXAMPLES, proto_text

BANK = EXAMPLES / "bank" / "account.proto"
SUBSCRIPTION = [
    EXAMPLES / "subscription" / f for f in ("model.proto", "events.proto", "subscription.proto")
]


def test_module_holds_messages_enums_and_generated_names() -> None:
    bank = generate_module(BANK.read_text(), name="bank")
    assert bank.AccountState.DESCRIPTOR.full_name == "account.v1.AccountState"
    assert bank.AccountStatus.ACCOUNT_STATUS_OPEN == 1
    for name in (
        "AccountAggregate",
        "AccountRepository",
        "AccountClient",
        "SDK",
        "AccountProjectionBuilder",
        "new_account",
        "ACCOUNT_OPENED_EVENT",
    ):
        assert name in bank.__all__
        assert hasattr(bank, name)
    assert bank.ACCOUNT_OPENED_EVENT == "account.v1.AccountOpenedEvent"


def test_model_lists_aggregates_events_commands_services_and_views() -> None:
    bank = generate_module(BANK.read_text(), name="bank")
    model: Model = bank.__es_model__
    summary = model.summary()
    assert summary["aggregates"] == ["Account"]
    assert "account.v1.MoneyWithdrawnEvent" in summary["events"]
    assert "account.v1.WithdrawCommand" in summary["commands"]
    assert summary["queries"] == ["account.v1.GetAccountQuery"]
    assert summary["services"] == [
        "account.v1.AccountCommandService",
        "account.v1.AccountQueryService",
    ]
    assert summary["views"] == ["account.v1.AccountView"]


def test_rerunning_with_a_changed_schema_in_one_process_works() -> None:
    first = generate_module(proto_text("message Thing { string a = 1; }"), name="again")
    second = generate_module(
        proto_text("message Thing { string a = 1; int64 b = 2; }"), name="again"
    )
    assert second.Thing(a="x", b=2).b == 2
    assert "b" not in first.Thing.DESCRIPTOR.fields_by_name
    assert first.Thing is not second.Thing


def test_events_of_two_runs_decode_with_either_registry() -> None:
    one = generate_module(BANK.read_text(), name="bank")
    two = generate_module(BANK.read_text(), name="bank")
    data = one.MoneyDepositedEvent(amount=5).SerializeToString()
    registry: EventTypeRegistry = two.ACCOUNT_EVENTS
    assert registry["account.v1.MoneyDepositedEvent"].FromString(data).amount == 5


def test_messages_and_nested_messages_pickle() -> None:
    shop = generate_module(paths=[EXAMPLES / "shop" / "shop.proto"], name="shop")
    order = shop.OrderState(order_id="o-1", lines=[shop.OrderState.Line(sku="A", quantity=2)])
    assert pickle.loads(pickle.dumps(order)) == order
    line = shop.OrderState.Line(sku="B")
    assert pickle.loads(pickle.dumps(line)) == line


def test_aggregates_pickle_with_their_state() -> None:
    bank = generate_module(BANK.read_text(), name="bank")
    agg = bank.new_account("acc-1", _Applier())
    agg.balance = 7
    copy = pickle.loads(pickle.dumps(agg))
    assert (copy.id, copy.balance) == ("acc-1", 7)


class _Applier:
    def __getattr__(self, name: str) -> object:
        if name.startswith("apply_"):
            return lambda agg, event: None
        raise AttributeError(name)


def test_generation_writes_nothing_into_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    proto = tmp_path / "account.proto"
    proto.write_text(BANK.read_text())
    generate_module(paths=[proto], name="bank")
    generate_module(BANK.read_text(), name="bank")
    assert sorted(os.listdir(tmp_path)) == ["account.proto"]


def test_files_split_across_three_protos_make_one_module() -> None:
    sub = generate_module(paths=SUBSCRIPTION, include_paths=[EXAMPLES], name="subs")
    assert [a.type_name for a in sub.__es_model__.aggregates] == ["Subscription"]
    assert sub.SUBSCRIPTION_EVENTS.keys() >= {"subscription.v1.PlanChangedEvent"}
    assert hasattr(sub, "SubscriptionClient")


def test_sources_mapping_compiles_several_files() -> None:
    mod = generate_module(
        {
            "state.proto": proto_text(
                "message Box { option (eventsourcing.aggregate_root).id_field = 'id';"
                " string id = 1; }"
            ),
            "events.proto": proto_text(
                'import "state.proto";',
                "message Packed { option (eventsourcing.event).aggregate_name = 'Box'; }",
            ),
        },
        name="boxes",
    )
    assert mod.BOX_EVENTS.keys() == {"t.v1.Packed"}


def test_module_source_is_kept_for_tracebacks() -> None:
    bank = generate_module(BANK.read_text(), name="bank")
    assert "class AccountAggregate(_es.GeneratedAggregate):" in bank.__es_source__


def test_name_must_be_an_identifier() -> None:
    with pytest.raises(ValueError, match="not a Python identifier"):
        generate_module("message A {}", name="my bank")


def test_live_module_does_not_bind_well_known_types_it_uses() -> None:
    # Subscription.renews_at is a Timestamp: a second Timestamp class bound in the
    # module would shadow the user's own import in a notebook.
    subs = generate_module(paths=SUBSCRIPTION, name="subs", include_paths=[EXAMPLES])
    assert "Timestamp" not in vars(subs)
    assert "def renews_at(self) -> _es.Message:" in subs.__es_source__


def test_calling_without_source_or_paths_says_nothing_was_given() -> None:
    with pytest.raises(TypeError) as caught:
        generate_module(name="bank")
    assert "got no proto" in str(caught.value)
    assert "not both" not in str(caught.value)


def test_calling_with_both_source_and_paths_says_to_pass_one() -> None:
    with pytest.raises(TypeError) as caught:
        generate_module(BANK.read_text(), name="bank", paths=[BANK])
    assert "got both proto text (source) and proto files (paths)" in str(caught.value)


def test_state_field_named_like_an_aggregate_attribute_is_a_warning() -> None:
    shop = generate_module(paths=[EXAMPLES / "shop" / "shop.proto"], name="shop")
    (warning,) = shop.__es_model__.warnings
    assert warning.line == 27
    assert "agg.state.version" in warning.message
