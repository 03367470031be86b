"""Services over NATS: a query's and a command's round trip, beside raw nats-py and in process.

    python -m bench.run --only nats_rpc        # round trips (about 15 s)
    python -m bench.bench_nats_rpc --load      # also the load figure: 4 processes, 20,000 commands

Figures (issue 11), each beside baselines from the same run:

- query round trip p50 through ``NatsTransport`` -> ``NatsServiceHost`` -> the bank's
  ``GetAccount`` handler, against a raw nats-py request-reply on a subject of the same
  length, with the same request headers, request bytes and reply size (a responder that
  replies precomputed bytes): target <= 2x raw;
- a deposit at ``synchronous=FULL`` over NATS, against raw + 1.2x the same deposit in
  process (``InProcessTransport``, same store settings): target p50 <= that sum;
- with ``--load``: 4 client processes send 20,000 commands to a host under
  ``eventstore serve``; commands/s, and a check that every command left exactly one event.

Calls take turns one by one (the order rotating); each figure is the median call.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

import nats  # noqa: E402
from account_es import SDK, DepositCommand, GetAccountQuery, OpenAccountCommand  # noqa: E402

from bench._progress import quick_requested, step  # noqa: E402
from bench.common import Figure  # noqa: E402
from eventstore.core.headers import COMMAND_ID_HEADER, MESSAGE_TYPE_HEADER  # noqa: E402
from eventstore.core.ids import new_command_id  # noqa: E402
from eventstore.core.transport import InProcessTransport  # noqa: E402
from eventstore.nats import EmbeddedNATS, NatsServiceHost, NatsTransport  # noqa: E402
from eventstore.nats.transport import new_traceparent  # noqa: E402
from eventstore.sqlite import SQLiteEventStore  # noqa: E402
from examples.bankaccount import service as bank  # noqa: E402

TOPIC = "nats rpc"
GET = "account.v1.AccountQueryService.GetAccount"
#: The raw responder's subject: as long as GET's, so both carry the same bytes.
RAW = "raw.v1.AccountQueryService.GetAccount".ljust(len(GET), "x")


def _p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def _timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


async def _measure(url: str, tmp: Path, rounds: int, per_round: int) -> list[Figure]:
    with SQLiteEventStore(tmp / "bench.db", synchronous="FULL") as store:
        bindings = bank.services(store)
        local = SDK(InProcessTransport(*bank.services(store)))
        async with (
            NatsServiceHost(url, *bindings, allow_anonymous=True),
            NatsTransport(url) as transport,
        ):
            sdk = SDK(transport)
            await sdk.account.open_account(
                OpenAccountCommand(account_id="acc", owner="Bench", initial_deposit=1)
            )
            await local.account.open_account(OpenAccountCommand(account_id="loc", owner="B"))
            query = GetAccountQuery(account_id="acc")
            reply = await transport.request(GET, query, {COMMAND_ID_HEADER: new_command_id()})
            reply_bytes = reply.to_proto().SerializeToString()
            request_bytes = query.SerializeToString()

            raw_nc = await nats.connect(url)
            responder = await nats.connect(url)
            reply_headers = {COMMAND_ID_HEADER: new_command_id()}

            async def answer(msg: Any) -> None:
                await responder.publish(msg.reply, reply_bytes, headers=reply_headers)

            await responder.subscribe(RAW, queue="eventstore", cb=answer)
            await responder.flush()

            async def raw_query() -> None:
                headers = {
                    COMMAND_ID_HEADER: new_command_id(),
                    MESSAGE_TYPE_HEADER: query.DESCRIPTOR.full_name,
                    "traceparent": new_traceparent(),
                }
                await raw_nc.request(RAW, request_bytes, timeout=5, headers=headers)

            async def nats_query() -> None:
                await sdk.account.get_account(query)

            async def nats_deposit() -> None:
                await sdk.account.deposit(DepositCommand(account_id="acc", amount=1))

            async def local_deposit() -> None:
                await local.account.deposit(DepositCommand(account_id="loc", amount=1))

            samples: dict[str, list[float]] = {k: [] for k in ("raw", "query", "deposit", "local")}
            calls = {
                "raw": raw_query,
                "query": nats_query,
                "deposit": nats_deposit,
                "local": local_deposit,
            }
            for call in calls.values():  # warm up
                await _timed(call, 50)
            order = list(calls)
            for r in range(rounds):
                step(TOPIC, f"round {r + 1}/{rounds}")
                for i in range(per_round):
                    # One call of each in turn: the disk's fsync time drifts, so
                    # both sides of a comparison see the same conditions.
                    for name in order[i % 4 :] + order[: i % 4]:
                        samples[name] += await _timed(calls[name], 1)
            await raw_nc.close()
            await responder.close()
    raw, q, dep, loc = (_p50(samples[k]) for k in ("raw", "query", "deposit", "local"))
    bound = raw + 1.2 * loc
    return [
        Figure(
            TOPIC,
            "query round trip p50 (GetAccount over NATS)",
            q,
            "ms",
            "raw nats-py request-reply, same sizes and headers",
            raw,
            higher_is_better=False,
            target_text="<= 2x raw",
            meets_target=q <= 2 * raw,
        ),
        Figure(
            TOPIC,
            "command p50 (Deposit over NATS, synchronous=FULL)",
            dep,
            "ms",
            f"raw + 1.2x in process (raw {raw:.3f} ms, in process {loc:.3f} ms)",
            bound,
            higher_is_better=False,
            target_text="<= raw + 1.2x in process",
            meets_target=dep <= bound,
        ),
    ]


def _load(url: str, tmp: Path, commands: int) -> Figure:
    db = tmp / "load.db"
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    serve = [
        "serve", "tests.nats.service_app", "--store", f"sqlite:///{db}", "--nats", url,
        "--allow-anonymous",
    ]
    host = subprocess.Popen(
        [sys.executable, "-m", "eventstore.cli", *serve, "--no-relay", "--no-projections"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert host.stdout is not None
    host.stdout.readline()  # "eventstore serve: serving ..."
    step(TOPIC, f"load: 4 processes x {commands // 4} commands")
    start = time.perf_counter()
    client = [sys.executable, "-m", "tests.nats.load_client", url]
    clients = [
        subprocess.Popen(
            [*client, f"c{i}", str(commands // 4), "32"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [json.loads(c.communicate(timeout=900)[0].strip().splitlines()[-1]) for c in clients]
    took = time.perf_counter() - start
    host.terminate()
    host.wait(30)
    with SQLiteEventStore(db) as store:
        causes = [e.metadata.causation_id for e in store.read_all()]
    ok = sum(r["ok"] for r in results)
    errors = [r["errors"] for r in results if r["errors"]]
    exact = len(causes) == commands == ok == len(set(causes)) and not errors
    return Figure(
        TOPIC,
        f"load: {commands:,} commands from 4 processes ({len(causes):,} events, errors {errors})",
        commands / took,
        "commands/s",
        target_text="nothing lost or doubled",
        meets_target=exact,
    )


def run(quick: bool = False, load: bool = False) -> list[Figure]:
    quick = quick or quick_requested()
    rounds, per_round = (4, 100) if quick else (8, 250)
    with EmbeddedNATS() as server, tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        figures = asyncio.run(_measure(server.url, Path(tmp), rounds, per_round))
        if load:
            figures.append(_load(server.url, Path(tmp), 4_000 if quick else 20_000))
    return figures


if __name__ == "__main__":
    from bench.common import format_row

    for figure in run(quick="--quick" in sys.argv, load="--load" in sys.argv):
        print(format_row(figure), flush=True)
