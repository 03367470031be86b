"""Write the sample datasets shipped in eventstore/datasets/data/ (deterministic).

    .venv/bin/python datasets/make_datasets.py            # rewrite every dataset
    .venv/bin/python datasets/make_datasets.py --check    # exit 1 if the files are stale
    .venv/bin/python datasets/make_datasets.py --out DIR  # write elsewhere

Each story is a seeded simulation: the same script always writes the same
bytes (ids come from the command ids, times from the seeded clock). The
payload classes come from the dataset's own proto through generate_module,
so a story can only write events its proto defines. The format is described
in datasets/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from google.protobuf import json_format  # noqa: E402
from google.protobuf.message import Message  # noqa: E402

from eventstore.codegen import generate_module  # noqa: E402
from eventstore.core.ids import deterministic_event_id  # noqa: E402

DATA = ROOT / "eventstore" / "datasets" / "data"
FORMAT_VERSION = 1


@dataclass
class Log:
    """The events of one story in log order, with per-aggregate versions."""

    name: str
    module: ModuleType
    records: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    commands: int = 0

    def command(
        self,
        at: datetime,
        aggregate_type: str,
        aggregate_id: str,
        events: list[Message],
        principal: str,
        correlation: str = "",
    ) -> str:
        """Record one command that stored ``events`` on one aggregate; returns its id."""
        self.commands += 1
        command_id = f"{self.name}-cmd-{self.commands:05d}"
        for index, message in enumerate(events):
            version = self.versions.get(aggregate_id, 0) + 1
            self.versions[aggregate_id] = version
            metadata = {"causation_id": command_id, "correlation_id": correlation or command_id}
            if principal:
                metadata["principal_id"] = principal
            self.records.append(
                {
                    "event_id": deterministic_event_id(command_id, aggregate_id, index),
                    "aggregate_id": aggregate_id,
                    "aggregate_type": aggregate_type,
                    "version": version,
                    "event_type": message.DESCRIPTOR.full_name,
                    "recorded_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "command_id": command_id,
                    "metadata": metadata,
                    "data": json_format.MessageToDict(message, preserving_proto_field_name=True),
                }
            )
        return command_id


def _clock(start: datetime, rng: random.Random, days: int, count: int) -> list[datetime]:
    """``count`` distinct, sorted times in office hours over ``days`` days."""
    times = set()
    while len(times) < count:
        day = rng.randrange(days)
        minute = rng.randrange(8 * 60, 19 * 60)
        times.add(start + timedelta(days=day, minutes=minute, seconds=rng.randrange(60)))
    return sorted(times)


# -- bank ------------------------------------------------------------------------------------
OWNERS = [
    "Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov",
    "Donald Knuth", "Frances Allen", "John Backus", "Margaret Hamilton", "Niklaus Wirth",
    "Radia Perlman", "Tony Hoare",
]  # fmt: skip


def bank(module: ModuleType) -> Log:
    """Twelve current accounts over sixty days: salaries, card payments, two closures."""
    rng = random.Random(20260105)
    log = Log("bank", module)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    balances: dict[str, int] = {}
    open_ids: list[str] = []
    tellers = ["teller-1", "teller-2", "web"]
    opened_at = _clock(start, rng, 10, len(OWNERS))
    for number, (owner, at) in enumerate(zip(OWNERS, opened_at, strict=True), 1):
        account = f"acc-{number:03d}"
        deposit = rng.choice([0, 5_000, 10_000, 25_000, 50_000])
        log.command(at, "Account", account,
                    [module.AccountOpenedEvent(owner=owner, initial_deposit=deposit)],
                    rng.choice(tellers))  # fmt: skip
        balances[account] = deposit
        open_ids.append(account)
    to_close = {"acc-004": 40, "acc-009": 52}  # account -> day it closes
    closed: set[str] = set()
    for at in _clock(start + timedelta(days=10), rng, 50, 270):
        day = (at - start).days
        for account, closing_day in to_close.items():
            if account not in closed and day >= closing_day:
                closed.add(account)
                events: list[Message] = []
                if balances[account]:
                    events.append(module.MoneyWithdrawnEvent(
                        amount=balances[account], reference="closing balance"))  # fmt: skip
                events.append(module.AccountClosedEvent(reason="customer request"))
                log.command(at, "Account", account, events, "teller-1")
                balances[account] = 0
        account = rng.choice([a for a in open_ids if a not in closed])
        if rng.random() < 0.45:
            amount = rng.choice([1_500, 2_500, 10_000, 32_000, 250_000])
            reference = (
                "salary" if amount == 250_000 else rng.choice(["transfer", "cash", "refund"])
            )
            event: Message = module.MoneyDepositedEvent(amount=amount, reference=reference)
            balances[account] += amount
        else:
            amount = rng.choice([899, 1_250, 4_500, 7_999, 12_000, 60_000])
            if amount > balances[account]:
                continue  # refused: no event
            reference = rng.choice(["card", "card", "rent", "groceries", "atm"])
            event = module.MoneyWithdrawnEvent(amount=amount, reference=reference)
            balances[account] -= amount
        log.command(at, "Account", account, [event], rng.choice(tellers))
    return log


# -- shop ------------------------------------------------------------------------------------
CATALOGUE = {
    "book-ddia": 4_200, "book-sicp": 3_900, "mug-lambda": 1_200, "sticker-proto": 300,
    "tshirt-es": 2_200, "hoodie-cqrs": 4_900, "poster-log": 1_500,
}  # fmt: skip
CUSTOMERS = [
    "Ines", "Jonas", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sami", "Tara",
    "Uma", "Victor", "Wen", "Xavier", "Yara", "Zoe",
]  # fmt: skip


def shop(module: ModuleType) -> Log:
    """Sixteen customers and their orders over a month: placed, paid, shipped or cancelled."""
    rng = random.Random(20260201)
    log = Log("shop", module)
    start = datetime(2026, 2, 1, tzinfo=UTC)
    registered: list[str] = []
    times = iter(_clock(start, rng, 28, 400))
    for number, name in enumerate(CUSTOMERS, 1):
        customer = f"cust-{number:03d}"
        email = f"{name.lower()}@example.com"
        log.command(next(times), "Customer", customer,
                    [module.CustomerRegisteredEvent(name=name, email=email)], "web")  # fmt: skip
        registered.append(customer)
    orders: list[tuple[str, int]] = []  # (order id, total), open for payment or shipping
    paid: list[str] = []
    order_number = 0
    for at in times:
        roll = rng.random()
        if roll < 0.40 or not (orders or paid):
            order_number += 1
            order = f"ord-{order_number:04d}"
            skus = rng.sample(sorted(CATALOGUE), rng.randint(1, 3))
            lines = [
                module.OrderLine(sku=s, quantity=rng.randint(1, 3), unit_price=CATALOGUE[s])
                for s in skus
            ]
            customer = rng.choice(registered)
            log.command(at, "Order", order,
                        [module.OrderPlacedEvent(customer_id=customer, lines=lines)], customer,
                        correlation=f"checkout-{order_number:04d}")  # fmt: skip
            orders.append((order, sum(line.quantity * line.unit_price for line in lines)))
        elif roll < 0.70 and orders:
            order, total = orders.pop(rng.randrange(len(orders)))
            if rng.random() < 0.12:
                log.command(at, "Order", order,
                            [module.OrderCancelled(reason="changed mind")], "web")  # fmt: skip
            else:
                method = rng.choice(["card", "card", "paypal", "invoice"])
                log.command(at, "Order", order,
                            [module.OrderPaid(amount=total, payment_method=method)],
                            "payments")  # fmt: skip
                paid.append(order)
        elif roll < 0.97 and paid:
            order = paid.pop(0)
            carrier = rng.choice(["DHL", "UPS", "bpost"])
            log.command(at, "Order", order, [module.OrderShippedEvent(carrier=carrier)], "warehouse")
        elif roll >= 0.97:
            customer = rng.choice(registered)
            number = int(customer.split("-")[1])
            email = f"{CUSTOMERS[number - 1].lower()}.{number}@example.org"
            log.command(at, "Customer", customer,
                        [module.CustomerEmailChanged(email=email)], customer)  # fmt: skip
    return log


@dataclass(frozen=True)
class Story:
    title: str
    description: str
    build: Callable[[ModuleType], Log]


STORIES = {
    "bank": Story(
        "Current accounts",
        "Twelve bank accounts over sixty days (January to March 2026): openings, salaries, "
        "card payments, transfers; two accounts are emptied and closed, each in one command "
        "storing two events. Amounts are in cents.",
        bank,
    ),
    "shop": Story(
        "Web shop orders",
        "Sixteen customers of a small web shop over February 2026: registrations, a few "
        "e-mail changes, and orders that are placed, paid and shipped, or cancelled. Prices "
        "are in cents.",
        shop,
    ),
}


def render(name: str) -> dict[str, str]:
    """The files of dataset ``name`` (file name -> text), from its proto and its story."""
    story = STORIES[name]
    proto_name = f"{name}.proto"
    module = generate_module((DATA / name / proto_name).read_text(encoding="utf-8"), name=name)
    log = story.build(module)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in log.records)
    manifest = {
        "format": FORMAT_VERSION,
        "name": name,
        "title": story.title,
        "description": story.description,
        "proto": proto_name,
        "events": "events.jsonl",
        "event_count": len(log.records),
        "aggregates": len(log.versions),
        "made_by": "datasets/make_datasets.py",
    }
    return {
        "events.jsonl": lines,
        "manifest.json": json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
    }


def outputs(out: Path) -> Iterator[tuple[Path, str]]:
    for name in STORIES:
        for file_name, text in render(name).items():
            yield out / name / file_name, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DATA, help=f"folder to write (default {DATA})")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(args.out):
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if args.out != DATA:
            proto = DATA / path.parent.name / f"{path.parent.name}.proto"
            (path.parent / proto.name).write_text(proto.read_text(encoding="utf-8"))
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({text.count(chr(10))} lines)")
    if stale:
        print("stale (run datasets/make_datasets.py):", *map(str, stale), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
