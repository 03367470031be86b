"""An idle filtered poll: what a caught-up filtered follower or projection pays to look again.

The log holds one event the readers want (position 1) and N-1 others after
it. Once caught up, a poll that finds nothing should cost the same at any
N (docs/decisions.md, 14). Figures, for N = 10,000 and 1,000,000:
  * an idle ``follow(event_types=[...])`` poll (``next_batch(timeout=0)``);
  * an idle ``catch_up()`` of a filtered projection into a SQLite read model;
beside, in the same run, the read a filtered reader made before scanned
positions: the wanted type after its last wanted event, i.e. the whole tail.

    .venv/bin/python -m bench.bench_idle_poll [--quick]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile

from bench._progress import step
from bench.common import Figure, format_row, median_seconds
from eventstore import Event, ProjectionContext
from eventstore.core.projections import ProjectionManager
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel

TOPIC = "idle poll"
WANTED = "bank.v1.AccountOpened"
OTHER = "bank.v1.MoneyDeposited"
_INSERT = (
    "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, version, "
    "timestamp, data, metadata, constraints) VALUES (?, ?, 'Account', ?, ?, 0, x'00', NULL, NULL)"
)


def build_log(path: str, events: int) -> None:
    """One wanted event, then ``events - 1`` others, written straight with executemany."""
    SQLiteEventStore(path).close()  # the schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        _INSERT,
        (
            (f"e-{i}", f"acc-{i // 1000}", WANTED if i == 0 else OTHER, i % 1000 + 1)
            for i in range(events)
        ),
    )
    conn.execute("COMMIT")
    conn.close()


class Opened:
    name = "opened"
    event_types = (WANTED,)

    def reset(self, ctx: ProjectionContext) -> None:
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS opened (id TEXT)")

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        ctx.connection.execute("INSERT INTO opened VALUES (?)", (event.aggregate_id,))


def measure(tmp: str, events: int, repeat: int) -> list[Figure]:
    path = os.path.join(tmp, f"log-{events}.db")
    step(TOPIC, f"writing a log of {events:,} events")
    build_log(path, events)
    figures = []
    with SQLiteEventStore(path) as store, SQLiteReadModel(store) as model:

        def rescan() -> None:  # what each idle poll read before: the tail after position 1
            assert store.read_all(1, limit=1000, event_types=[WANTED]) == []

        old = median_seconds(rescan, repeat=repeat)
        with store.follow(0, event_types=[WANTED]) as sub:
            assert len(sub.next_batch(timeout=0)) == 1

            def follow_poll() -> None:
                assert sub.next_batch(timeout=0) == []

            follow_poll()
            ours = median_seconds(follow_poll, repeat=repeat * 20)
        figures.append(
            Figure(
                TOPIC,
                f"idle filtered follow poll, {events:,} events",
                ours * 1000,
                "ms",
                "rescan of the tail (before)",
                old * 1000,
                higher_is_better=False,
            )
        )
        manager = ProjectionManager(store)
        manager.register(Opened(), read_model=model)
        manager.catch_up()
        assert model.load_scanned_position("opened") == events

        def catch_up_poll() -> None:
            assert manager.catch_up() == {"opened": 0}

        ours = median_seconds(catch_up_poll, repeat=repeat * 20)
        figures.append(
            Figure(
                TOPIC,
                f"idle filtered projection catch_up, {events:,} events",
                ours * 1000,
                "ms",
                "rescan of the tail (before)",
                old * 1000,
                higher_is_better=False,
            )
        )
    os.remove(path)
    return figures


def run(*, quick: bool = False) -> list[Figure]:
    """Idle polls at 10,000 and 1,000,000 events (100,000 with ``quick``)."""
    sizes = (10_000, 100_000 if quick else 1_000_000)
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-idle-poll-") as tmp:
        small, large = (measure(tmp, n, repeat) for n in sizes)
    figures = []
    for a, b in zip(small, large, strict=True):
        figures.append(a)
        # The target: the large log's idle poll within 2x of the small one's (same cost).
        met = b.value <= 2 * a.value + 0.01
        figures.append(
            Figure(
                b.topic,
                b.name,
                b.value,
                b.unit,
                b.baseline_name,
                b.baseline_value,
                higher_is_better=False,
                target_text=f"<= 2x the {sizes[0]:,}-event poll",
                meets_target=met,
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for figure in run(quick=args.quick):
        print(format_row(figure))


if __name__ == "__main__":
    main()
