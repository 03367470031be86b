"""The command form, headless: set input values, click Send, read the Output widget."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import ipywidgets as W
import pytest

from eventstore import AppError, SQLiteEventStore
from eventstore.core.transport import InProcessTransport, Route
from eventstore.notebook.widgets import CommandForm, FormValueError
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
