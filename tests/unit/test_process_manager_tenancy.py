"""A process manager acts in the tenant of the event that triggered it, as a service principal.

Its commands carry that tenant (``Es-Tenant-Id``) and are sent as
``process-manager:<name>`` (roles configurable), acting for that tenant only:
a tenant-isolated handler accepts them in that tenant, and refuses
(``TENANT_MISMATCH``) a command reaching into another tenant or one with no
tenant at all. On both stores (the ``process_store`` fixture).
"""

from __future__ import annotations

import asyncio
from typing import Any

from eventstore import EventMetadata, NewEvent, ProcessManager, new_event_id
from eventstore.auth import Principal
from eventstore.core.transport import TENANT_ID_HEADER, InProcessTransport
from eventstore.middleware import authorization_middleware
from eventstore.tenancy import with_tenant
from tests.support.process_stores import ProcessStore
from tests.support.transfers import (
    AccountApplier,
    AccountCommands,
    AccountCommandServiceServer,
    AccountRepository,
    OpenAccountCommand,
    TransferProcess,
    TransferRequested,
)

SERVICE = "account.v1.AccountCommandService"
TELLER = Principal("teller-1", roles=("teller",), tenants=("acme", "globex"))


def _isolated_bank(store: Any, rules: dict[str, list[str]]) -> tuple[InProcessTransport, Any]:
    repository = AccountRepository(store, AccountApplier(), tenant_isolation=True)
    transport = InProcessTransport(
        AccountCommandServiceServer(AccountCommands(repository)),
        middlewares=[authorization_middleware(rules)],
    )
    return transport, repository


def _open(transport: InProcessTransport, tenant: str, balances: dict[str, int]) -> None:
    async def go() -> None:
        for account, balance in balances.items():
            command = OpenAccountCommand(account_id=account, owner=account, initial_deposit=balance)
            reply = await transport.request(
                f"{SERVICE}.OpenAccount", command, {TENANT_ID_HEADER: tenant}, principal=TELLER
            )
            assert reply.success, reply.error

    asyncio.run(go())


def _request(store: Any, tenant: str, transfer: str, source: str, target: str, amount: int) -> None:
    """A TransferRequested stored in ``tenant`` (its stream and its metadata)."""
    message = TransferRequested(transfer_id=transfer, source=source, target=target, amount=amount)
    stream = f"{tenant}::transfer-{transfer}" if tenant else f"transfer-{transfer}"
    metadata = EventMetadata(correlation_id=transfer, tenant_id=tenant)
    event = NewEvent(
        new_event_id(), message.DESCRIPTOR.full_name, message.SerializeToString(), metadata
    )
    store.append(stream, "Transfer", 0, [event])


def _balance(repository: Any, tenant: str, account: str) -> int:
    with with_tenant(tenant):
        return int(repository.load(account).balance)


RULES = {f"{SERVICE}.OpenAccount": ["teller"], f"{SERVICE}.*": ["process-manager"]}


def test_commands_act_in_the_triggering_events_tenant_as_the_service_principal(
    process_store: ProcessStore,
) -> None:
    with process_store.open() as store:
        transport, repository = _isolated_bank(store, RULES)
        for tenant in ("acme", "globex"):
            _open(transport, tenant, {"a": 100, "b": 0})
        # One transfer id in both tenants: two processes that never meet.
        _request(store, "acme", "t1", "a", "b", 30)
        _request(store, "globex", "t1", "a", "b", 5)
        runner = process_store.runner(store, TransferProcess(), transport)
        runner.drain()
        assert runner.state("t1", tenant="acme")["status"] == "completed"
        assert runner.state("t1", tenant="globex")["status"] == "completed"
        assert runner.state("t1") is None  # no process of no tenant
        assert [_balance(repository, "acme", x) for x in "ab"] == [70, 30]
        assert [_balance(repository, "globex", x) for x in "ab"] == [95, 5]
        moved = [e for e in store.read_all() if e.aggregate_type == "Account" and e.version > 1]
        assert {(e.aggregate_id, e.metadata.tenant_id) for e in moved} == {
            ("acme::a", "acme"),
            ("acme::b", "acme"),
            ("globex::a", "globex"),
            ("globex::b", "globex"),
        }
        assert {e.metadata.principal_id for e in moved} == {"process-manager:transfers"}
        assert {e.metadata.correlation_id for e in moved} == {"t1"}


def test_the_service_principal_has_the_roles_the_runner_is_given(
    process_store: ProcessStore,
) -> None:
    rules = {f"{SERVICE}.OpenAccount": ["teller"], f"{SERVICE}.*": ["payments"]}
    with process_store.open() as store:
        transport, repository = _isolated_bank(store, rules)
        _open(transport, "acme", {"a": 100, "b": 0})
        _request(store, "acme", "t1", "a", "b", 30)
        _request(store, "acme", "t2", "a", "b", 30)
        # The default role ("process-manager") is not the one the rules ask for: refused.
        runner = process_store.runner(store, TransferProcess(), transport)
        runner.decide()
        [t1_debit, _] = runner.pending_commands()
        asyncio.run(runner.send_pending())
        state = runner.state("t1", tenant="acme")
        assert state["status"] == "failed"
        assert state["errors"] == ["debit: PERMISSION_DENIED"]
        assert t1_debit[1] == "acme::t1"  # the outbox keys the process by tenant
        # Given the role, the next runner's commands pass.
        _request(store, "acme", "t3", "a", "b", 30)
        runner = process_store.runner(store, TransferProcess(), transport, roles=["payments"])
        runner.drain()
        assert runner.state("t3", tenant="acme")["status"] == "completed"
        assert [_balance(repository, "acme", x) for x in "ab"] == [70, 30]


def test_a_command_reaching_into_another_tenant_is_refused_and_compensated(
    process_store: ProcessStore,
) -> None:
    with process_store.open() as store:
        transport, repository = _isolated_bank(store, RULES)
        _open(transport, "acme", {"a": 100})
        _open(transport, "globex", {"b": 0})
        # A process of acme names globex's account by its stored id: the handler, in acme,
        # refuses the credit in the repository itself, and the process refunds the debit.
        _request(store, "acme", "t1", "a", "globex::b", 30)
        runner = process_store.runner(store, TransferProcess(), transport)
        runner.drain()
        state = runner.state("t1", tenant="acme")
        assert state["errors"] == ["credit: TENANT_MISMATCH"]
        assert state["status"] == "compensated"
        assert _balance(repository, "acme", "a") == 100
        assert _balance(repository, "globex", "b") == 0
        assert [e.version for e in store.load_stream("globex::b")] == [1]  # nothing written


def test_a_process_of_no_tenant_is_refused_by_a_tenant_isolated_handler(
    process_store: ProcessStore,
) -> None:
    with process_store.open() as store:
        transport, repository = _isolated_bank(store, RULES)
        _open(transport, "acme", {"a": 100, "b": 0})
        _request(store, "", "t1", "a", "b", 30)  # an event with no tenant in its metadata
        runner = process_store.runner(store, TransferProcess(), transport)
        runner.drain()
        state = runner.state("t1")
        assert state["errors"] == ["debit: TENANT_MISMATCH"]
        assert state["status"] == "failed"
        assert [_balance(repository, "acme", x) for x in "ab"] == [100, 0]


class _Seen(ProcessManager):
    """Records each event's tenant and stream in its process's state."""

    name = "seen"
    event_types = (TransferRequested,)

    def react(self, process: Any, event: Any, message: Any) -> None:
        process.state.setdefault("seen", []).append([process.tenant, event.aggregate_id])


def test_a_process_of_no_tenant_whose_id_holds_the_separator_never_meets_a_tenants_process(
    process_store: ProcessStore,
) -> None:
    # A caller-chosen correlation id 'acme::t1' with no tenant used to load (and take
    # over) tenant acme's process 't1': its state, and its row's tenant.
    with process_store.open() as store:
        transport, _ = _isolated_bank(store, RULES)
        runner = process_store.runner(store, _Seen(), transport)
        _request(store, "acme", "t1", "a", "b", 1)
        runner.drain()
        walk_in = TransferRequested(transfer_id="w", source="a", target="b", amount=1)
        metadata = EventMetadata(correlation_id="acme::t1")  # no tenant
        store.append(
            "walk-in",
            "Transfer",
            0,
            [
                NewEvent(
                    new_event_id(),
                    walk_in.DESCRIPTOR.full_name,
                    walk_in.SerializeToString(),
                    metadata,
                )
            ],
        )
        runner.drain()
        assert runner.state("t1", tenant="acme") == {"seen": [["acme", "acme::transfer-t1"]]}
        assert runner.state("acme::t1") == {"seen": [["", "walk-in"]]}
