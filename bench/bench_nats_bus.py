"""The store relayed to NATS JetStream, and projections fed from the bus.

Figures, each beside a baseline measured in the same run on the same
``EmbeddedNATS`` (JetStream file storage, ``sync_interval: always``):
  * relay throughput (store -> stream, strict order, every ack awaited) beside
    raw pipelined nats-py ``publish_async`` of the same subjects, headers and
    payload sizes (targets: >= 20,000 events/s and >= 0.5x raw);
  * a command (one append) to its projection updated through the bus, relay in
    the writers' process, beside the same projection fed from the store
    directly (targets: p50 < 5 ms, p99 < 20 ms).

    .venv/bin/python -m bench.bench_nats_bus [--events N] [--commands N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Figure, format_row
from eventstore import Event, NewEvent, ProjectionContext, new_event_id
from eventstore.core.projections import ProjectionManager
from eventstore.nats import EmbeddedNATS, NatsEventBus, Relay
from eventstore.nats.envelope import encode_event, headers_for, subject_for
from eventstore.sqlite import SQLiteEventStore

TOPIC = "nats"
DEPOSITED = "bench.v1.MoneyDeposited"


def _fill(store: SQLiteEventStore, count: int) -> None:
    for start in range(0, count, 100):
        n = min(100, count - start)
        store.append(
            f"acc-{start // 100}",
            "Account",
            0,
            [NewEvent(new_event_id(), DEPOSITED, b"x" * 40) for _ in range(n)],
        )


async def _relay_rate(url: str, store: SQLiteEventStore, count: int) -> float:
    async with NatsEventBus(url, stream="BENCH_RELAY", subject_prefix="brelay") as bus:
        relay = Relay(store, bus, name=f"bench-relay-{url}")  # a fresh checkpoint per server
        start = time.perf_counter()
        published = await relay.publish_pending()
        elapsed = time.perf_counter() - start
        assert published == count, (published, count)
    return count / elapsed


async def _raw_rate(url: str, store: SQLiteEventStore, count: int) -> float:
    import nats

    events = store.read_all()
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_RAW", subjects=["braw.>"], allow_direct=True)
    start = time.perf_counter()
    futures = []
    previous = None
    for event in events:
        futures.append(
            await js.publish_async(
                subject_for("braw", event.aggregate_type, event.event_type, event.aggregate_id),
                encode_event(event),
                headers=headers_for(event, previous),
            )
        )
        previous = event.event_id
    await asyncio.wait_for(asyncio.gather(*futures), 60)
    elapsed = time.perf_counter() - start
    await nc.close()
    return count / elapsed


def _read_figure(url: str, store: SQLiteEventStore, count: int) -> Figure:
    """``bus.read_all(0)`` of the relayed stream beside ``store.read_all(0)``."""
    with NatsEventBus(url, stream="BENCH_RELAY", subject_prefix="brelay", store=store) as bus:
        start = time.perf_counter()
        got = len(bus.read_all(0))
        bus_rate = got / (time.perf_counter() - start)
    start = time.perf_counter()
    store_rate = len(store.read_all(0)) / (time.perf_counter() - start)
    assert got == count, (got, count)
    return Figure(
        TOPIC,
        f"bus.read_all of {count:,} events (batched direct gets)",
        bus_rate,
        "events/s",
        "store.read_all of the same events",
        store_rate,
    )


class _Seen:
    name = "seen"

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.cond = threading.Condition()

    def reset(self, ctx: ProjectionContext) -> None:
        pass

    def handle(self, event: Event, ctx: ProjectionContext) -> None:
        with self.cond:
            self.at[event.event_id] = time.perf_counter()
            self.cond.notify_all()


def _latencies(store: SQLiteEventStore, source: object, commands: int, tag: str) -> list[float]:
    """Milliseconds from each append to its event handled by a running projection."""
    seen = _Seen()
    manager = ProjectionManager(source)  # type: ignore[arg-type]
    manager.register(seen)
    manager.catch_up()
    runner = threading.Thread(target=asyncio.run, args=(manager.run(),), daemon=True)
    runner.start()
    out = []
    for i in range(commands):
        event_id = new_event_id()
        start = time.perf_counter()
        store.append(f"{tag}-{i}", "Account", 0, [NewEvent(event_id, DEPOSITED, b"x" * 40)])
        with seen.cond:
            if not seen.cond.wait_for(lambda e=event_id: e in seen.at, 10):  # type: ignore[misc]
                raise TimeoutError(f"event {i} never reached the projection")
        out.append((seen.at[event_id] - start) * 1000)
        time.sleep(0.002)
    manager.stop()
    runner.join(10)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    quick: bool = False, events: int | None = None, commands: int | None = None
) -> list[Figure]:
    count = events or (3_000 if quick else 20_000)
    n_commands = commands or (100 if quick else 500)
    figures: list[Figure] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        SQLiteEventStore(Path(tmp) / "relay.db", synchronous="NORMAL") as store,
    ):
        _fill(store, count)
        for sync_always in (False, True):
            with EmbeddedNATS(sync_always=sync_always) as server:
                relay_rate = asyncio.run(_relay_rate(server.url, store, count))
                raw_rate = asyncio.run(_raw_rate(server.url, store, count))
                if not sync_always:
                    figures.append(_read_figure(server.url, store, count))
            fsync = "fsync every write" if sync_always else "JetStream's default fsync"
            figures.append(
                Figure(
                    TOPIC,
                    f"relay throughput ({count:,} events, {fsync})",
                    relay_rate,
                    "events/s",
                    "raw pipelined publish_async, same headers",
                    raw_rate,
                    target_text=">= 20,000/s and >= 0.5x raw",
                    meets_target=relay_rate >= 20_000 and relay_rate >= 0.5 * raw_rate,
                )
            )
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNATS() as server:
        with SQLiteEventStore(Path(tmp) / "cmd.db", synchronous="NORMAL") as store:
            direct = _latencies(store, store, n_commands, "direct")
            with NatsEventBus(server.url, stream="BENCH_CMD", subject_prefix="bcmd") as bus:
                relay = Relay(store, bus, poll_interval=0.5)
                relay_thread = threading.Thread(
                    target=asyncio.run, args=(relay.run(),), daemon=True
                )
                relay_thread.start()
                via_bus = _latencies(store, bus, n_commands, "bus")
                relay.stop()
                relay_thread.join(10)
        for label, q, bound in (("p50", 0.5, 5.0), ("p99", 0.99, 20.0)):
            value = _pct(via_bus, q)
            figures.append(
                Figure(
                    TOPIC,
                    f"command to projection through the bus, {label} ({n_commands} commands)",
                    value,
                    "ms",
                    "the same projection fed from the store",
                    _pct(direct, q),
                    higher_is_better=False,
                    target_text=f"< {bound:g} ms",
                    meets_target=value < bound,
                )
            )
        figures.append(
            Figure(
                TOPIC,
                "command to projection through the bus, mean",
                statistics.mean(via_bus),
                "ms",
                "the same projection fed from the store",
                statistics.mean(direct),
                higher_is_better=False,
            )
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int)
    parser.add_argument("--commands", type=int)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for figure in run(quick=args.quick, events=args.events, commands=args.commands):
        print(format_row(figure))


if __name__ == "__main__":
    main(sys.argv[1:])
