"""One client process of the NATS load test: opens its accounts, then deposits 1 cent each.

    python -m tests.nats.load_client URL PREFIX COMMANDS CONCURRENCY

Prints one JSON line: the commands sent, the ones that succeeded, the errors
by code, and how many were retried. Like a real client, a command refused with
``CONCURRENCY_CONFLICT`` (the handler's own retries lost the race every time:
32 deposits in flight on 8 accounts, handlers on a thread pool) is sent again
with the same command id, which is applied once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import SDK, DepositCommand, OpenAccountCommand  # noqa: E402

from eventstore import AppError  # noqa: E402
from eventstore.nats import NatsTransport  # noqa: E402

ACCOUNTS = 8


async def main(url: str, prefix: str, commands: int, concurrency: int) -> dict[str, object]:
    errors: dict[str, int] = {}
    ok = retried = 0
    async with NatsTransport(url, timeout=30) as transport:
        sdk = SDK(transport)
        for k in range(ACCOUNTS):
            await sdk.account.open_account(
                OpenAccountCommand(account_id=f"{prefix}-{k}", owner=prefix),
                command_id=f"{prefix}-open-{k}",
            )
        ok += ACCOUNTS
        slots = asyncio.Semaphore(concurrency)

        async def deposit(n: int) -> None:
            nonlocal ok, retried
            async with slots:
                for attempt in range(5):
                    try:
                        await sdk.account.deposit(
                            DepositCommand(account_id=f"{prefix}-{n % ACCOUNTS}", amount=1),
                            command_id=f"{prefix}-dep-{n}",
                        )
                        ok += 1
                        return
                    except AppError as error:
                        if error.code == "CONCURRENCY_CONFLICT" and attempt < 4:
                            retried += 1
                            continue
                        errors[error.code] = errors.get(error.code, 0) + 1
                        return

        await asyncio.gather(*(deposit(n) for n in range(commands - ACCOUNTS)))
    return {"sent": commands, "ok": ok, "errors": errors, "retried": retried}


if __name__ == "__main__":
    url, prefix, commands, concurrency = sys.argv[1:5]
    result = asyncio.run(main(url, prefix, int(commands), int(concurrency)))
    print(json.dumps(result), flush=True)
