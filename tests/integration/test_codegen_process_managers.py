"""Process managers generated from protos (the process_manager option), through both paths:
in process (``generate_module``, what ``%%es_generate`` runs) and the protoc plugin; a
generated manager runs a transfer end to end in the SQLite ``ProcessRunner``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from eventstore import EventMetadata, NewEvent, new_event_id
from eventstore.codegen import generate_module
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.process_runner import ProcessRunner
from tests.support.transfers import balances, bank, open_accounts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "proto" / "examples"
TRANSFER = EXAMPLES / "transfer" / "transfer.proto"
PLUGIN = Path(sys.executable).parent / "protoc-gen-eventsourcing"
OPTIONS_DIR = ROOT / "eventstore" / "proto"


@pytest.fixture(scope="module")
def transfer() -> ModuleType:
    return generate_module(name="transfer", paths=[TRANSFER], include_paths=[EXAMPLES])


def transfers_class(m: ModuleType) -> type[Any]:
    """The user's side: a subclass of the generated base that defines every handler."""

    class Transfers(m.TransfersProcessManager):  # type: ignore[name-defined, misc]
        def on_transfer_requested(self, process, state, event, envelope):  # type: ignore[no-untyped-def]
            state.source, state.target, state.amount = event.source, event.target, event.amount
            state.status = "debiting"
            process.send("debit", m.WithdrawCommand(account_id=event.source, amount=event.amount))
            process.schedule("deadline", timedelta(seconds=30))

        def on_money_withdrawn(self, process, state, event, envelope):  # type: ignore[no-untyped-def]
            if state.status == "debiting":
                process.cancel("deadline")
                state.status = "crediting"
                credit = m.DepositCommand(account_id=state.target, amount=state.amount)
                process.send("credit", credit)

        def on_money_deposited(self, process, state, event, envelope):  # type: ignore[no-untyped-def]
            if state.status in ("crediting", "refunding"):
                state.status = "completed" if state.status == "crediting" else "compensated"
                process.finish()

        def on_timeout(self, process, state, step):  # type: ignore[no-untyped-def]
            if state.status == "debiting":
                state.status = "timed out"
                process.finish()

        def on_rejected(self, process, state, step, error):  # type: ignore[no-untyped-def]
            state.errors.append(f"{step}: {error.code}")
            if step == "credit":
                state.status = "refunding"
                refund = m.DepositCommand(account_id=state.source, amount=state.amount)
                process.send("refund", refund)
            else:
                state.status = "failed"
                process.finish()

    return Transfers


def request(store: SQLiteEventStore, m: ModuleType, transfer_id: str, *route: Any) -> None:
    source, target, amount = route
    message = m.TransferRequestedEvent(
        transfer_id=transfer_id, source=source, target=target, amount=amount
    )
    store.append(
        transfer_id,
        "Transfer",
        0,
        [
            NewEvent(
                new_event_id(),
                message.DESCRIPTOR.full_name,
                message.SerializeToString(),
                EventMetadata(correlation_id=transfer_id),
            )
        ],
    )


def test_generate_module_writes_the_base_class_with_name_state_and_event_filter(
    transfer: ModuleType,
) -> None:
    base = transfer.TransfersProcessManager
    assert base.name == "transfers"
    assert base.state_type is transfer.TransferProcessState
    assert base.event_types == (
        transfer.TransferRequestedEvent,
        transfer.MoneyWithdrawnEvent,
        transfer.MoneyDepositedEvent,
    )
    assert dict(base.event_handlers) == {
        "transfer.v1.TransferRequestedEvent": "on_transfer_requested",
        "account.v1.MoneyWithdrawnEvent": "on_money_withdrawn",
        "account.v1.MoneyDepositedEvent": "on_money_deposited",
    }
    assert transfer.__es_model__.summary()["processes"] == ["transfers"]


def test_a_subclass_that_leaves_out_a_handler_is_refused_when_made(transfer: ModuleType) -> None:
    class Partial(transfer.TransfersProcessManager):  # type: ignore[name-defined, misc]
        def on_transfer_requested(self, process, state, event, envelope):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(TypeError) as caught:
        Partial()
    assert "Partial does not define on_money_withdrawn, on_money_deposited" in str(caught.value)
    assert "TransfersProcessManager" in str(caught.value)


def test_a_generated_manager_runs_a_transfer_end_to_end(
    tmp_path: Path, transfer: ModuleType
) -> None:
    store = SQLiteEventStore(tmp_path / "t.db")
    transport, repository = bank(store)
    manager = transfers_class(transfer)()
    runner = ProcessRunner(store, manager, transport)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        request(store, transfer, "t1", "a", "b", 30)
        request(store, transfer, "t2", "a", "nobody", 20)
        runner.drain()
        assert balances(repository, ["a", "b"]) == {"a": 70, "b": 30}
        done = manager.decode_state(runner.state("t1"))
        assert (done.status, done.amount, done.target) == ("completed", 30, "b")
        refunded = manager.decode_state(runner.state("t2"))
        assert refunded.status == "compensated"
        assert list(refunded.errors) == ["credit: ACCOUNT_NOT_FOUND"]
        assert runner.pending_commands() == []
        assert runner.state("a") is None  # the accounts' own events start no process


def test_a_generated_managers_timeout_sees_its_typed_state(
    tmp_path: Path, transfer: ModuleType
) -> None:
    store = SQLiteEventStore(tmp_path / "t.db")
    transport, _ = bank(store)
    manager = transfers_class(transfer)()
    runner = ProcessRunner(store, manager, transport)
    with store:
        open_accounts(transport, {"a": 100, "b": 0})
        request(store, transfer, "t1", "a", "b", 30)
        runner.decide()  # decided, the deadline armed; the debit not sent yet
        assert [(p, s) for p, s, _ in runner.timeouts()] == [("t1", "deadline")]
        assert runner.fire_timeouts(now=time.time_ns() // 1000 + 60_000_000) == 1
        late = manager.decode_state(runner.state("t1"))
        assert (late.status, late.amount) == ("timed out", 30)


def test_the_kit_checks_a_generated_managers_commands(transfer: ModuleType) -> None:
    from eventstore.testing import ProcessKit

    kit = ProcessKit(transfers_class(transfer))
    requested = transfer.TransferRequestedEvent(transfer_id="t", source="a", target="b", amount=5)
    withdrawn = transfer.MoneyWithdrawnEvent(amount=5)
    # A withdrawal of no transfer (process "a") decides nothing and keeps no state.
    scenario = kit.given(("t", requested), ("a", withdrawn), ("t", withdrawn))
    scenario.then_commands(
        transfer.WithdrawCommand(account_id="a", amount=5),
        transfer.DepositCommand(account_id="b", amount=5),
    )
    assert scenario.processes["a"].state == {}
    assert scenario.processes["t"].state == {
        "source": "a",
        "target": "b",
        "amount": "5",
        "status": "crediting",
    }


def test_the_protoc_plugin_writes_the_same_manager_and_it_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{OPTIONS_DIR}",
            f"-I{EXAMPLES}",
            f"--plugin=protoc-gen-eventsourcing={PLUGIN}",
            f"--eventsourcing_out={out}",
            "bank/account.proto",
            "transfer/transfer.proto",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    golden = ROOT / "tests" / "golden" / "codegen" / "transfer" / "transfer_es.py.golden"
    assert (out / "transfer" / "transfer_es.py").read_text() == golden.read_text()
    script = textwrap.dedent("""\
        from bank.account_pb2 import WithdrawCommand
        from eventstore.testing import ProcessKit
        from transfer.transfer_es import TransferRequestedEvent, TransfersProcessManager

        class Transfers(TransfersProcessManager):
            def on_transfer_requested(self, process, state, event, envelope):
                state.status = "debiting"
                process.send("debit", WithdrawCommand(account_id=event.source, amount=event.amount))

            def on_money_withdrawn(self, process, state, event, envelope):
                pass

            def on_money_deposited(self, process, state, event, envelope):
                pass

        asked = TransferRequestedEvent(transfer_id="t", source="a", target="b", amount=5)
        ProcessKit(Transfers).given(("t", asked)).then_commands(
            WithdrawCommand(account_id="a", amount=5)
        )
        print(Transfers.name, [t.DESCRIPTOR.name for t in Transfers.event_types])
        """)
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": os.pathsep.join([str(out), env["PYTHONPATH"]])},
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split(maxsplit=1) == [
        "transfers",
        "['TransferRequestedEvent', 'MoneyWithdrawnEvent', 'MoneyDepositedEvent']\n",
    ]
