"""Two tenants, two ways to keep them apart, both over HTTP with the generated SDK.

    python -m examples.multitenant            # from the repository root

The bank of examples/bankaccount is served by a ``ConnectApp`` (API keys:
one teller per tenant) and called through ``ConnectTransport``:

1. **Shared database**: one SQLite file, a repository with
   ``tenant_isolation=True``. Both tenants open ``acc-1``; the file holds
   ``acme::acc-1`` and ``beta::acc-1``; each tenant's query sees its own
   account; naming the other's stored id, or asking for the other tenant,
   is refused; each tenant's read of the log (``event_log()``) holds only
   its own events.
2. **Database per tenant**: ``TenantStores`` opens ``acme.db`` and ``beta.db``;
   the same requests land in separate files under plain ids.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bankaccount" / "generated"))
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parent.parent))

import httpx  # noqa: E402
from account_es import (  # noqa: E402
    SDK,
    AccountCommandServiceServer,
    AccountQueryServiceServer,
    AccountRepository,
    DepositCommand,
    GetAccountQuery,
    OpenAccountCommand,
)

from eventstore import AppError  # noqa: E402
from eventstore.auth import Principal, api_key_authenticator, hash_api_key  # noqa: E402
from eventstore.core.headers import TENANT_ID_HEADER  # noqa: E402
from eventstore.middleware import default_middlewares  # noqa: E402
from eventstore.rpc import ConnectApp, ConnectTransport  # noqa: E402
from eventstore.sqlite import SQLiteEventStore  # noqa: E402
from eventstore.tenancy import TenantStores, current_tenant, with_tenant  # noqa: E402
from examples.bankaccount.handlers import (  # noqa: E402
    AccountApplier,
    AccountCommands,
    AccountQueries,
)

KEYS = {"acme": "key-of-acme-teller", "beta": "key-of-beta-teller"}
RULES = {"account.v1.*": ["teller"]}


def serve(repository: Any) -> ConnectApp:
    authenticate = api_key_authenticator(
        {
            hash_api_key(key): Principal(f"teller@{tenant}", roles=("teller",), tenants=(tenant,))
            for tenant, key in KEYS.items()
        }
    )
    return ConnectApp(
        AccountCommandServiceServer(AccountCommands(repository)),
        AccountQueryServiceServer(AccountQueries(repository)),
        authenticate=authenticate,
        middlewares=default_middlewares(network=True, rules=RULES),
    )


def sdk_for(app: ConnectApp, tenant: str, **headers: str) -> SDK:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    transport = ConnectTransport(
        "http://bank", headers={"X-Api-Key": KEYS[tenant], **headers}, client=client
    )
    return SDK(transport)


async def refused(call: Any) -> str:
    try:
        await call
    except AppError as error:
        return error.code
    return "accepted"


async def story(app: ConnectApp) -> None:
    acme, beta = sdk_for(app, "acme"), sdk_for(app, "beta")
    await acme.account.open_account(
        OpenAccountCommand(account_id="acc-1", owner="Ann", initial_deposit=100)
    )
    await beta.account.open_account(
        OpenAccountCommand(account_id="acc-1", owner="Bob", initial_deposit=5)
    )
    for name, sdk in (("acme", acme), ("beta", beta)):
        view = await sdk.account.get_account(GetAccountQuery(account_id="acc-1"))
        print(f"  {name} sees acc-1: owner {view.owner}, balance {view.balance}")
    code = await refused(
        beta.account.deposit(DepositCommand(account_id="acme::acc-1", amount=1))
    )
    print(f"  beta depositing to 'acme::acc-1': {code}")
    posing = sdk_for(app, "beta", **{TENANT_ID_HEADER: "acme"})
    code = await refused(posing.account.get_account(GetAccountQuery(account_id="acc-1")))
    print(f"  beta asking to act for acme: {code}")


class PerTenantRepository:
    """The repository of the request's tenant (``current_tenant()``), one store each."""

    def __init__(self, stores: TenantStores) -> None:
        self.stores = stores
        self._repositories: dict[str, AccountRepository] = {}

    def __getattr__(self, name: str) -> Any:
        tenant = current_tenant()
        if tenant not in self._repositories:
            store = self.stores.for_tenant(tenant)
            self._repositories[tenant] = AccountRepository(store, AccountApplier())
        return getattr(self._repositories[tenant], name)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        print("1. shared database, tenant_isolation=True")
        with SQLiteEventStore(Path(folder) / "shared.db") as store:
            repository = AccountRepository(store, AccountApplier(), tenant_isolation=True)
            app = serve(repository)
            asyncio.run(story(app))
            app.router.close()
            ids = sorted({e.aggregate_id for e in store.read_all(0)})
            print(f"  stored ids in shared.db: {', '.join(ids)}")  # the operator's view
            for tenant in KEYS:  # a tenant-facing read of the log: its own events only
                with with_tenant(tenant):
                    events = repository.event_log().read_all()
                log = [f"{e.position}:{e.aggregate_id}" for e in events]
                print(f"  {tenant}'s log: {', '.join(log)}")

        print("2. a database per tenant, TenantStores")
        with TenantStores(Path(folder) / "tenants") as stores:
            app = serve(PerTenantRepository(stores))
            asyncio.run(story(app))
            app.router.close()
            for tenant in stores.open_tenants:
                ids = sorted({e.aggregate_id for e in stores.for_tenant(tenant).read_all(0)})
                print(f"  stored ids in {tenant}.db: {', '.join(ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
