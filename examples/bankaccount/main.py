"""The bank account story: every step goes through the generated client.

    python -m examples.bankaccount            # from the repository root
    python examples/bankaccount/main.py --db bank.db
    python -m examples.bankaccount --db postgresql://user@host/bank   # the same on PostgreSQL
    python -m examples.bankaccount --nats     # the same story over NATS (embedded server)
    python -m examples.bankaccount --nats nats://127.0.0.1:4222

Open an account, deposit, fail to withdraw too much (an ``AppError`` that
crossed the transport), send one command id twice (applied once), reload,
look at the snapshots, and travel back to an earlier version. With ``--nats``
the services are served by a ``NatsServiceHost`` and the same SDK calls them
through a ``NatsTransport``: only the transport changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The generated modules (account_pb2, account_es) live in generated/.
sys.path.insert(0, str(HERE / "generated"))
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parent.parent))

from account_es import (  # noqa: E402
    SDK,
    AccountCommandServiceServer,
    AccountQueryServiceServer,
    AccountRepository,
    DepositCommand,
    GetAccountQuery,
    OpenAccountCommand,
    WithdrawCommand,
)

from eventstore import AppError, EveryNEvents, open_store  # noqa: E402
from eventstore.core.transport import InProcessTransport, Transport  # noqa: E402
from examples.bankaccount.handlers import (  # noqa: E402
    AccountApplier,
    AccountCommands,
    AccountQueries,
)


def say(text: str) -> None:
    print(text, flush=True)


@contextlib.asynccontextmanager
async def over_nats(url: str | None, *bindings: object) -> AsyncIterator[Transport]:
    """Serve ``bindings`` over NATS (an embedded server unless ``url``) and yield a client."""
    from eventstore.nats import EmbeddedNATS, NatsServiceHost, NatsTransport

    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            url = (await stack.enter_async_context(EmbeddedNATS())).url
            say(f"   (an embedded nats-server runs at {url})")
        await stack.enter_async_context(NatsServiceHost(url, *bindings, allow_anonymous=True))  # type: ignore[arg-type]
        yield await stack.enter_async_context(NatsTransport(url))


async def story(db: Path | str, nats: str | bool = False) -> dict[str, object]:
    """Run the story on the store at ``db`` (a SQLite path or any store URL); returns what it
    observed (for the tests).

    ``nats``: False runs in process; True over an embedded NATS server; a URL over that server.
    """
    seen: dict[str, object] = {}
    with open_store(db) as store:
        repository = AccountRepository(store, AccountApplier(), EveryNEvents(3))
        bindings = (
            AccountCommandServiceServer(AccountCommands(repository)),
            AccountQueryServiceServer(AccountQueries(repository)),
        )
        async with contextlib.AsyncExitStack() as stack:
            if nats is False:
                transport: Transport = InProcessTransport(*bindings)
            else:
                url = nats if isinstance(nats, str) else None
                transport = await stack.enter_async_context(over_nats(url, *bindings))
            await _steps(store, repository, SDK(transport), db, seen)
    return seen


async def _steps(
    store: Any,
    repository: AccountRepository,
    bank: SDK,
    db: Path | str,
    seen: dict[str, object],
) -> None:
    say(f"1. Alice opens account acc-1 with 100 cents (store: {db})")
    opened = await bank.account.open_account(
        OpenAccountCommand(account_id="acc-1", owner="Alice", initial_deposit=100)
    )
    say(f"   opened {opened.account_id!r} at version {opened.version}")

    say("2. She deposits 50 cents")
    after = await bank.account.deposit(DepositCommand(account_id="acc-1", amount=50))
    say(f"   balance {after.balance} at version {after.version}")

    say("3. She tries to withdraw 500 cents")
    try:
        await bank.account.withdraw(WithdrawCommand(account_id="acc-1", amount=500))
    except AppError as error:
        seen["withdraw_error"] = error.code
        say(f"   refused: {error.code}: {error.message} ({error.solution})")

    say("4. Her app sends one deposit of 25 twice with the same command id (a retry)")
    first = await bank.account.deposit(
        DepositCommand(account_id="acc-1", amount=25), command_id="deposit-0001"
    )
    again = await bank.account.deposit(
        DepositCommand(account_id="acc-1", amount=25), command_id="deposit-0001"
    )
    events = store.load_stream("acc-1")
    seen["versions"] = (first.version, again.version)
    seen["event_count"] = len(events)
    say(
        f"   first reply: balance {first.balance} v{first.version}; retry: "
        f"balance {again.balance} v{again.version}; events stored: {len(events)}"
    )

    say("5. A withdrawal of 60, then the account is read back through the query service")
    await bank.account.withdraw(WithdrawCommand(account_id="acc-1", amount=60))
    view = await bank.account.get_account(GetAccountQuery(account_id="acc-1"))
    seen["balance"] = view.balance
    say(f"   {view.owner} has {view.balance} cents at version {view.version}")

    say("6. Reloading from the store (a fresh repository) gives the same state")
    fresh = AccountRepository(store, AccountApplier()).load("acc-1")
    seen["reloaded_balance"] = fresh.balance
    say(f"   reloaded: balance {fresh.balance}, version {fresh.version}")

    snapshots = store.list_snapshots("acc-1")
    seen["snapshot_versions"] = [s.version for s in snapshots]
    say(f"7. Snapshots were taken every 3 events, at versions {[s.version for s in snapshots]}")

    past = repository.load("acc-1", at_version=2)
    seen["balance_at_v2"] = past.balance
    say(f"8. Time travel: at version 2 the balance was {past.balance} cents")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--db",
        help="SQLite file or store URL, e.g. postgresql://user@host/bank (default: a temp file)",
    )
    parser.add_argument(
        "--nats",
        nargs="?",
        const=True,
        default=False,
        metavar="URL",
        help="go through NATS: an embedded server, or the server at URL",
    )
    args = parser.parse_args(argv)
    if args.db is not None:
        asyncio.run(story(args.db, args.nats))
        return 0
    with tempfile.TemporaryDirectory(prefix="bankaccount-") as tmp:
        asyncio.run(story(Path(tmp) / "bank.db", args.nats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
