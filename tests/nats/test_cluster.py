"""The same code against a 3-node JetStream cluster on loopback, stream replicas 3.

Killing the stream leader stalls publishing for the election; the relay's
publishes fail fast meanwhile, it resumes in order and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import nats.errors
import pytest

from eventstore.core.projections import ProjectionManager
from eventstore.nats import EmbeddedNATS, NatsEventBus, Relay
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.read_model import SQLiteReadModel
from tests.support.busproof import Ledger, append, assert_exactly_once, wait_until

pytestmark = pytest.mark.slow

T = TypeVar("T")


def _once_the_cluster_answers(read: Callable[[], T], seconds: float = 30) -> T:
    """``read()`` retried while the cluster elects: killing a node that also led the
    JetStream meta group leaves API requests (stream info) unanswered until a new meta
    leader is elected, which can come after the stream's own new leader has taken the
    relay's publishes again."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return read()
        except (nats.errors.TimeoutError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[EmbeddedNATS]]:
    ports = _free_ports(3)
    routes = [f"nats://127.0.0.1:{p}" for p in ports]
    nodes = [
        EmbeddedNATS(
            store_dir=tmp_path / f"n{i}",
            server_name=f"n{i}",
            cluster_name="es",
            cluster_port=ports[i],
            routes=[r for j, r in enumerate(routes) if j != i],
        )
        for i in range(3)
    ]
    try:
        threads = [threading.Thread(target=n.start) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        yield nodes
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.close()


def test_stream_leader_sigkilled_mid_stream_loses_nothing(
    cluster: list[EmbeddedNATS], tmp_path: Path
) -> None:
    urls = [n.url for n in cluster]
    store_path = tmp_path / "events.db"
    with SQLiteEventStore(store_path, synchronous="NORMAL") as store:
        deadline = time.monotonic() + 30
        bus: NatsEventBus | None = None
        while bus is None:  # JetStream needs its meta leader before the stream can be made
            try:
                bus = NatsEventBus(urls, replicas=3, request_timeout=2.0).open()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            relay = Relay(store, bus, window=64, ack_timeout=2.0, retry_interval=0.2)
            runner = threading.Thread(target=asyncio.run, args=(relay.run(),), daemon=True)
            runner.start()
            append(store, 600, per_append=5)
            wait_until(lambda: relay.status().position >= 300, 30, "the relay to make progress")

            async def leader() -> str:
                info = await bus.js.stream_info(bus.stream)
                assert info.cluster is not None and info.cluster.replicas is not None
                assert len(info.cluster.replicas) == 2
                return str(info.cluster.leader)

            name = bus.io.run(leader())  # type: ignore[union-attr]
            victim = next(n for n in cluster if n.server_name == name)
            victim.kill()
            append(store, 600, per_append=5)
            head = store.head_position()
            wait_until(lambda: relay.status().position >= head, 60, "the relay after the election")
            relay.stop()
            runner.join(10)
            relayed = _once_the_cluster_answers(lambda: bus.read_all(0))
            assert [e.event_id for e in relayed] == [e.event_id for e in store.read_all()]
            with SQLiteReadModel(tmp_path / "read.db") as model:
                manager = ProjectionManager(bus)
                manager.register(Ledger(), read_model=model)
                manager.catch_up()
            assert_exactly_once(store, tmp_path / "read.db")
        finally:
            bus.close()
