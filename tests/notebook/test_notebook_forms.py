"""The command form, headless: set input values, click Send, read the Output widget."""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import ipywidgets as W
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import Message

from eventstore import AppError, SQLiteEventStore
from eventstore.codegen import generate_module
from eventstore.core.transport import InProcessTransport, Route
from eventstore.notebook.widgets import CommandForm, FormValueError
from eventstore.notebook.widgets.static import static_html
from tests.support.bank import Account, account_repository, pb


def test_the_form_has_one_input_per_field_chosen_by_type(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    assert isinstance(form.input("order_id"), W.Text)
    assert isinstance(form.input("amount_cents"), W.IntText)
    assert isinstance(form.input("max_items"), W.BoundedIntText)
    assert form.input("max_items").min == 0
    assert isinstance(form.input("discount"), W.FloatText)
    assert isinstance(form.input("gift"), W.Checkbox)
    assert isinstance(form.input("shipping.city"), W.Text)
    assert isinstance(form.input("deliver_after"), W.Text)
    priority = form.input("priority")
    assert isinstance(priority, W.Dropdown)
    assert [label for label, _ in priority.options] == [
        "PRIORITY_UNSPECIFIED",
        "PRIORITY_LOW",
        "PRIORITY_HIGH",
    ]
    assert isinstance(form.input("payment"), W.Dropdown)
    assert form.input("payment").options == ("(none)", "card_token", "invoice_to")


def test_send_builds_the_message_from_every_kind_of_input(nbforms):
    sent = []
    form = CommandForm(nbforms.PlaceOrder, sent.append)
    form.input("order_id").value = "o-1"
    form.input("amount_cents").value = 2**40
    form.input("max_items").value = 3
    form.input("discount").value = 0.25
    form.input("gift").value = True
    form.input("priority").value = nbforms.PRIORITY_HIGH
    form.input("note").value = "hi"
    form.input("shipping.city").value = "Lyon"
    form.input("tags").add().widget.value = "red"
    form.input("tags").add().widget.value = "big"
    line = form.input("lines").add()
    line.editor("sku").widget.value = "sku-9"
    line.editor("quantity").widget.value = 2
    entry = form.input("limits").add()
    entry.editor("key").widget.value = "daily"
    entry.editor("value").widget.value = 500
    form.input("payment").value = "card_token"
    form.input("card_token").value = "tok_1"
    form.input("deliver_after").value = "2026-12-01T10:00:00Z"
    form.input("coupon").value = "XMAS"
    form.click()
    (msg,) = sent
    assert msg.order_id == "o-1"
    assert msg.amount_cents == 2**40
    assert (msg.max_items, msg.discount, msg.gift) == (3, 0.25, True)
    assert msg.priority == nbforms.PRIORITY_HIGH
    assert msg.note == b"hi"
    assert msg.shipping.city == "Lyon"
    assert list(msg.tags) == ["red", "big"]
    assert [(x.sku, x.quantity) for x in msg.lines] == [("sku-9", 2)]
    assert dict(msg.limits) == {"daily": 500}
    assert msg.WhichOneof("payment") == "card_token"
    assert msg.card_token == "tok_1"
    assert msg.deliver_after.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert msg.HasField("coupon")


def test_a_nested_message_left_at_its_defaults_stays_unset(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    assert not form.message().HasField("shipping")
    assert form.message().WhichOneof("payment") is None


def test_a_removed_list_item_is_not_sent(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    tags = form.input("tags")
    tags.add().widget.value = "keep"
    tags.add().widget.value = "drop"
    remove_button = tags.widget.children[1].children[1].children[1]
    remove_button.click()
    assert list(form.message().tags) == ["keep"]


def test_choosing_a_oneof_member_shows_only_its_input(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    oneof = form.editor.editors["payment"]
    assert oneof.widget.children[1].children == ()
    form.input("payment").value = "invoice_to"
    assert oneof.widget.children[1].children == (oneof.members["invoice_to"].widget,)
    form.input("invoice_to.city").value = "Oslo"
    msg = form.message()
    assert msg.WhichOneof("payment") == "invoice_to"
    assert msg.invoice_to.city == "Oslo"


def test_the_reply_of_a_plain_send_function_is_shown_field_by_field(tmp_path):
    with SQLiteEventStore(tmp_path / "f.db") as store:
        repo = account_repository(store)

        def open_account(cmd: pb.AccountOpened) -> pb.AccountState:
            account = Account("acc-7")
            account.open(cmd.owner, cmd.initial_balance)
            repo.save(account)
            return account.state

        form = CommandForm(pb.AccountOpened, open_account)
        form.input("owner").value = "Ada"
        form.input("initial_balance").value = 40
        form.click()
        assert form.last_error is None
        assert "reply: testbank.v1.AccountState" in form.output_text()
        assert "balance    = 40" in form.output_text()
        assert repo.load("acc-7").state.owner == "Ada"
        assert "ok" in form.status.value


def test_an_app_error_is_shown_with_its_code_message_and_solution(nbforms):
    def refuse(cmd):
        raise AppError("OUT_OF_STOCK", "sku-9 is sold out", "Order fewer or another sku.")

    form = CommandForm(nbforms.PlaceOrder, refuse)
    form.click()
    text = form.output_text()
    assert "AppError OUT_OF_STOCK: sku-9 is sold out" in text
    assert "what to do: Order fewer or another sku." in text
    assert "rejected: OUT_OF_STOCK" in form.status.value
    assert form.output.outputs[0]["name"] == "stderr"


def test_any_other_exception_in_the_callback_is_shown_with_its_traceback(nbforms):
    def broken(cmd):
        return {}["missing"]

    form = CommandForm(nbforms.PlaceOrder, broken)
    form.click()
    text = form.output_text()
    assert "Traceback" in text
    assert "KeyError: 'missing'" in text
    assert isinstance(form.last_error, KeyError)


def test_a_value_the_field_cannot_take_is_reported_naming_the_field(nbforms):
    sent = []
    form = CommandForm(nbforms.PlaceOrder, sent.append)
    line = form.input("lines").add()
    line.editor("quantity").widget.value = 2**40  # an int32
    form.click()
    assert sent == []
    assert isinstance(form.last_error, FormValueError)
    assert "field 'lines[0].quantity'" in form.output_text()


def test_a_bad_timestamp_is_reported_naming_the_field(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    form.input("deliver_after").value = "next tuesday"
    form.click()
    assert "field 'deliver_after'" in form.output_text()


def test_sending_again_replaces_the_previous_output(nbforms):
    outcomes = iter([AppError("NOPE", "no"), None])

    def flaky(cmd):
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    form = CommandForm(nbforms.PlaceOrder, flaky)
    form.click()
    form.click()
    assert form.output_text() == "sent (no reply)\n"


def _transport(store: SQLiteEventStore) -> InProcessTransport:
    repo = account_repository(store)

    async def open_account(cmd: pb.AccountOpened, ctx) -> pb.AccountState:
        await asyncio.sleep(0)
        account = Account(f"acc-{cmd.owner.lower()}")
        account.open(cmd.owner, cmd.initial_balance)
        repo.save_with_command(account, ctx.command_id, ctx.metadata)
        return account.state

    return InProcessTransport(
        Route("testbank.v1.Accounts.Open", pb.AccountOpened, pb.AccountState, open_account)
    )


def test_an_async_send_runs_on_the_running_loop_and_shows_the_transport_reply(tmp_path):
    async def scenario() -> CommandForm:
        with SQLiteEventStore(tmp_path / "a.db") as store:
            transport = _transport(store)
            form = CommandForm(
                pb.AccountOpened, lambda m: transport.request("testbank.v1.Accounts.Open", m)
            )
            form.input("owner").value = "Bea"
            form.input("initial_balance").value = 12
            form.click()
            assert form.pending is not None and not form.pending.done()
            await form.wait()
            assert store.stream_version("acc-bea") == 1
            return form

    form = asyncio.run(scenario())
    assert "owner      = 'Bea'" in form.output_text()
    assert form.last_result.balance == 12


def test_an_app_error_in_a_transport_response_is_shown(tmp_path):
    async def scenario() -> CommandForm:
        with SQLiteEventStore(tmp_path / "a.db") as store:
            transport = _transport(store)
            form = CommandForm(
                pb.MoneyDeposited, lambda m: transport.request("testbank.v1.Accounts.Open", m)
            )
            form.click()
            await form.wait()
            return form

    form = asyncio.run(scenario())
    assert "AppError INVALID_MESSAGE_TYPE" in form.output_text()
    assert isinstance(form.last_error, AppError)


def test_an_async_send_without_a_running_loop_says_so_in_the_output(nbforms):
    async def send(cmd):
        return None

    form = CommandForm(nbforms.PlaceOrder, send)
    form.click()
    assert "no event loop is running" in form.output_text()
    assert form.pending is None


@pytest.mark.parametrize("path", ["nope", "shipping.nope"])
def test_asking_for_an_unknown_field_names_the_fields_there_are(nbforms, path):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    with pytest.raises(KeyError, match="has no field 'nope'"):
        form.input(path)


# -- input errors, optional fields ----------------------------------------------------------
def test_a_bad_timestamp_shows_what_to_type_and_no_traceback(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    form.input("deliver_after").value = "next tuesday"
    form.click()
    text = form.output_text()
    assert "Traceback" not in text
    assert "type it like 2026-01-31T09:30:00Z" in text
    assert "check field deliver_after" in form.status.value


def test_an_untouched_optional_field_stays_unset(nbforms):
    sent = []
    form = CommandForm(nbforms.PlaceOrder, sent.append)
    form.click()
    (msg,) = sent
    assert not msg.HasField("coupon")


def test_an_optional_field_ticked_as_set_is_sent_even_at_its_default(nbforms):
    sent = []
    form = CommandForm(nbforms.PlaceOrder, sent.append)
    form.set_control("coupon").value = True
    form.click()
    (msg,) = sent
    assert msg.HasField("coupon")
    assert msg.coupon == ""


def test_typing_into_an_optional_field_ticks_its_set_control(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: None)
    form.input("coupon").value = "XMAS"
    assert form.set_control("coupon").value is True


# -- lists of scalars and of well-known types ------------------------------------------------
@pytest.fixture(scope="module")
def lists() -> type[Message]:
    """``message Lists { repeated int32 counts = 1; repeated Timestamp times = 2; }``, built
    in a descriptor pool of its own (nbforms.proto has neither shape)."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="nblists.proto",
        package="nblists.v1",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    field = descriptor_pb2.FieldDescriptorProto
    message = proto.message_type.add(name="Lists")
    message.field.add(name="counts", number=1, type=field.TYPE_INT32, label=field.LABEL_REPEATED)
    message.field.add(
        name="times",
        number=2,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".google.protobuf.Timestamp",
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("nblists.v1.Lists"))


def test_a_list_item_the_field_cannot_take_is_reported_naming_its_index(lists):
    sent = []
    form = CommandForm(lists, sent.append)
    form.input("counts").add().widget.value = 7
    form.input("counts").add().widget.value = 2**40  # an int32
    form.click()
    assert sent == []
    assert isinstance(form.last_error, FormValueError)
    assert form.last_error.path == "counts[1]"
    assert "field 'counts[1]'" in form.output_text()


def test_a_list_of_timestamps_sends_the_typed_items_and_skips_empty_ones(lists):
    sent = []
    form = CommandForm(lists, sent.append)
    times = form.input("times")
    times.add().widget.value = "2026-01-31T09:30:00Z"
    times.add().widget.value = ""
    times.add().widget.value = "2026-02-01T00:00:00Z"
    form.click()
    (msg,) = sent
    assert [t.ToDatetime(tzinfo=UTC) for t in msg.times] == [
        datetime(2026, 1, 31, 9, 30, tzinfo=UTC),
        datetime(2026, 2, 1, tzinfo=UTC),
    ]


def test_the_editor_names_stay_importable_from_forms_after_their_move():
    from eventstore.notebook.widgets import editors, forms

    for name in ["FormValueError", "MessageEditor", "RepeatedEditor", "field_editor"]:
        assert getattr(forms, name) is getattr(editors, name)
    for name in ["_Editor", "_ScalarEditor", "_JsonEditor", "_NestedEditor", "_OneofEditor"]:
        assert getattr(forms, name) is getattr(editors, name)
    assert forms._TooDeep is editors._TooDeep


# -- a generated client over InProcessTransport ----------------------------------------------
BANK_PROTO = Path(__file__).resolve().parents[2] / "proto" / "examples" / "bank" / "account.proto"


@pytest.fixture(scope="module")
def generated_bank() -> ModuleType:
    return generate_module(paths=[BANK_PROTO], name="nbform_bank")


def _generated_client(bank: ModuleType, store: SQLiteEventStore) -> Any:
    class Applier:
        def apply_account_opened_event(self, agg: Any, event: Any) -> None:
            agg.owner, agg.balance = event.owner, event.initial_deposit

        def apply_money_deposited_event(self, agg: Any, event: Any) -> None:
            agg.balance += event.amount

        def apply_money_withdrawn_event(self, agg: Any, event: Any) -> None:
            agg.balance -= event.amount

        def apply_account_closed_event(self, agg: Any, event: Any) -> None:
            agg.status = bank.AccountStatus.ACCOUNT_STATUS_CLOSED

    repo = bank.AccountRepository(store, Applier())

    class Commands:  # written against the generated AccountCommandServiceHandler Protocol
        def open_account(self, cmd: Any, ctx: Any) -> Any:
            account = repo.factory(cmd.account_id)
            account.apply_change(
                bank.AccountOpenedEvent(owner=cmd.owner, initial_deposit=cmd.initial_deposit)
            )
            result = repo.save_with_command(account, ctx.command_id)
            return bank.OpenAccountResponse(account_id=cmd.account_id, version=result.version)

        def deposit(self, cmd: Any, ctx: Any) -> Any:
            if cmd.amount <= 0:
                raise AppError("INVALID_AMOUNT", f"cannot deposit {cmd.amount}", "Deposit more.")
            account = repo.load(cmd.account_id)
            account.apply_change(bank.MoneyDepositedEvent(amount=cmd.amount))
            result = repo.save_with_command(account, ctx.command_id)
            return bank.BalanceResponse(balance=account.balance, version=result.version)

        def withdraw(self, cmd: Any, ctx: Any) -> Any:
            raise AppError("NOT_HERE", "no withdrawals in this test", "Deposit instead.")

        def close_account(self, cmd: Any, ctx: Any) -> Any:
            raise AppError("NOT_HERE", "no closing in this test", "Leave it open.")

    protocol_methods = {
        name for name in vars(bank.AccountCommandServiceHandler) if not name.startswith("_")
    }
    assert protocol_methods == {"open_account", "deposit", "withdraw", "close_account"}
    server = bank.AccountCommandServiceServer(Commands())
    return bank.AccountClient(InProcessTransport(server))


def test_send_goes_through_a_generated_client_and_shows_its_reply(generated_bank, tmp_path):
    bank = generated_bank

    async def scenario() -> CommandForm:
        with SQLiteEventStore(tmp_path / "g.db") as store:
            client = _generated_client(bank, store)
            await client.open_account(
                bank.OpenAccountCommand(account_id="acc-1", owner="Ada", initial_deposit=100)
            )
            form = CommandForm(bank.DepositCommand, client.deposit)
            form.input("account_id").value = "acc-1"
            form.input("amount").value = 25
            form.click()
            await form.wait()
            assert store.stream_version("acc-1") == 2
            return form

    form = asyncio.run(scenario())
    assert form.last_error is None
    assert (form.last_result.balance, form.last_result.version) == (125, 2)
    assert "reply: account.v1.BalanceResponse" in form.output_text()


def test_an_app_error_from_a_generated_client_is_shown_in_the_form(generated_bank, tmp_path):
    bank = generated_bank

    async def scenario() -> CommandForm:
        with SQLiteEventStore(tmp_path / "g.db") as store:
            client = _generated_client(bank, store)
            form = CommandForm(bank.DepositCommand, client.deposit)
            form.input("account_id").value = "acc-1"
            form.input("amount").value = -5
            form.click()
            await form.wait()
            return form

    form = asyncio.run(scenario())
    assert isinstance(form.last_error, AppError)
    assert form.last_error.code == "INVALID_AMOUNT"
    assert "AppError INVALID_AMOUNT: cannot deposit -5" in form.output_text()
    assert "what to do: Deposit more." in form.output_text()
    assert "Traceback" not in form.output_text()


def test_the_forms_mimebundle_carries_a_static_picture_of_its_inputs_and_reply(nbforms):
    form = CommandForm(nbforms.PlaceOrder, lambda m: "accepted")
    form.input("order_id").value = "ord-7"
    form.send_button.click()

    bundle = form._repr_mimebundle_()

    assert "application/vnd.jupyter.widget-view+json" in bundle
    page = bundle["text/html"]
    assert "<code>ord-7</code>" in page and "<button disabled>Send</button>" in page
    assert "accepted" in page
    assert bundle["text/plain"] == "CommandForm widget (run the notebook to use it)"


# -- list item labels after removals ---------------------------------------------------------
SHELF_PROTO = """syntax = "proto3";
package nbshelf.v1;

message Chapter {
  string title = 1;
  repeated int32 pages = 2;
}

message AddBook {
  repeated string authors = 1;
  repeated Chapter chapters = 2;
  map<string, int32> stock = 3;
}
"""


@pytest.fixture(scope="module")
def shelf() -> ModuleType:
    return generate_module(SHELF_PROTO, name="nbform_shelf")


def item_labels(editor: Any) -> list[str]:
    """The labels a list editor shows for its items, read from its picture."""
    name = editor.field.name
    return re.findall(rf"<b>({re.escape(name)}\[\d+\])</b>", static_html(editor.widget))


def click_remove(editor: Any, index: int) -> None:
    """Click the remove button of item ``index`` of a list editor."""
    rows = editor.widget.children[1].children
    remove = rows[index].children[-1]
    assert isinstance(remove, W.Button) and remove.icon == "trash"
    remove.click()


def test_list_labels_count_from_zero_after_any_adds_and_removes(shelf):
    form = CommandForm(shelf.AddBook, lambda m: None)
    authors = form.input("authors")
    expected: list[str] = []
    steps = random.Random(7)
    for step in range(40):
        if expected and steps.random() < 0.45:
            index = steps.randrange(len(expected))
            click_remove(authors, index)
            del expected[index]
        else:
            authors.add().widget.value = f"author {step}"
            expected.append(f"author {step}")
        assert item_labels(authors) == [f"authors[{i}]" for i in range(len(expected))]
        assert list(form.message().authors) == expected


def test_an_item_added_after_a_removal_takes_the_next_label(shelf):
    form = CommandForm(shelf.AddBook, lambda m: None)
    authors = form.input("authors")
    for name in ["Ada", "Bea", "Cy"]:
        authors.add().widget.value = name
    click_remove(authors, 0)
    added = authors.add()
    added.widget.value = "Dee"
    assert item_labels(authors) == ["authors[0]", "authors[1]", "authors[2]"]
    assert added.widget.description == "authors[2]"
    assert list(form.message().authors) == ["Bea", "Cy", "Dee"]


def test_message_items_are_labelled_and_renumbered_after_a_removal(shelf):
    form = CommandForm(shelf.AddBook, lambda m: None)
    chapters = form.input("chapters")
    for title in ["one", "two", "three"]:
        chapters.add().editor("title").widget.value = title
    click_remove(chapters, 1)
    chapters.add().editor("title").widget.value = "four"
    assert item_labels(chapters) == ["chapters[0]", "chapters[1]", "chapters[2]"]
    assert [c.title for c in form.message().chapters] == ["one", "three", "four"]


def test_a_bad_value_in_a_list_item_names_its_index_after_a_removal(shelf):
    form = CommandForm(shelf.AddBook, lambda m: None)
    chapters = form.input("chapters")
    chapters.add()
    second = chapters.add()
    pages = second.editor("pages")
    pages.add().widget.value = 12
    pages.add().widget.value = 2**40  # an int32
    click_remove(chapters, 0)
    form.click()
    assert isinstance(form.last_error, FormValueError)
    assert form.last_error.path == "chapters[0].pages[1]"
    assert "check field chapters[0].pages[1]" in form.status.value


def test_a_list_inside_a_list_item_keeps_its_own_labels_when_the_outer_list_shrinks(shelf):
    form = CommandForm(shelf.AddBook, lambda m: None)
    chapters = form.input("chapters")
    chapters.add()
    second = chapters.add()
    pages = second.editor("pages")
    for page in [3, 5, 8]:
        pages.add().widget.value = page
    click_remove(chapters, 0)
    click_remove(pages, 0)
    pages.add().widget.value = 13
    assert item_labels(pages) == ["pages[0]", "pages[1]", "pages[2]"]
    assert [item.path for item in pages.items] == [
        "chapters[0].pages[0]",
        "chapters[0].pages[1]",
        "chapters[0].pages[2]",
    ]
    assert list(form.message().chapters[0].pages) == [5, 8, 13]


def test_map_entries_are_renumbered_after_a_removal(shelf):
    form = CommandForm(shelf.AddBook, lambda m: None)
    stock = form.input("stock")
    for shop, count in [("north", 1), ("south", 2), ("east", 3)]:
        entry = stock.add()
        entry.editor("key").widget.value = shop
        entry.editor("value").widget.value = count
    click_remove(stock, 0)
    stock.add().editor("key").widget.value = "west"
    assert item_labels(stock) == ["stock[0]", "stock[1]", "stock[2]"]
    assert dict(form.message().stock) == {"south": 2, "east": 3, "west": 0}


def test_a_list_of_timestamps_is_renumbered_after_a_removal(lists):
    form = CommandForm(lists, lambda m: None)
    times = form.input("times")
    times.add().widget.value = "2026-01-31T09:30:00Z"
    times.add().widget.value = "later"
    times.add()
    click_remove(times, 0)
    assert item_labels(times) == ["times[0]", "times[1]"]
    form.click()
    assert isinstance(form.last_error, FormValueError)
    assert form.last_error.path == "times[0]"


def test_removing_an_item_from_code_renumbers_and_names_the_items_there_are(shelf):
    form = CommandForm(shelf.AddBook, lambda m: None)
    authors = form.input("authors")
    for name in ["Ada", "Bea"]:
        authors.add().widget.value = name
    authors.remove(0)
    assert item_labels(authors) == ["authors[0]"]
    with pytest.raises(IndexError, match=r"authors has 1 item\(s\), so there is no item 3"):
        authors.remove(3)
