"""A PostgreSQL server away for a while: reads fail as ``StorageError`` saying to retry
(never psycopg_pool's ``PoolTimeout``), and work again within seconds of its return; a
read that waits for a full pool is told so."""

from __future__ import annotations

import os
import signal
import threading
import time

from psycopg_pool import PoolTimeout

from eventstore import NewEvent, new_event_id
from eventstore.core.errors import StorageError
from eventstore.postgres import EmbeddedPostgres, PostgresEventStore
from tests.support import postgres

#: Long enough that psycopg_pool's own backoff (1, 2, 4, 8, 16 s ...) would wait ~10 s
#: more after the server is back.
OUTAGE = 20.0


def _stop_now(server: EmbeddedPostgres) -> None:
    """Stop the server (a fast shutdown), keeping its data for ``restart()``."""
    assert server.data_dir is not None
    pid_file = server.data_dir / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
    deadline = time.monotonic() + 30
    while pid_file.exists():
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.05)


def test_reads_during_and_after_an_outage_fail_as_storage_errors_then_recover_within_seconds():
    with EmbeddedPostgres(fsync=False) as server:
        store = PostgresEventStore(server.dsn, pool_size=2, connect_timeout=2)
        try:
            store.append("acc-1", "Account", 0, [NewEvent(new_event_id(), "test.Opened", b"")])
            assert store.head_position() == 1
            _stop_now(server)
            down = time.monotonic()
            during: list[BaseException] = []
            while time.monotonic() - down < OUTAGE:  # a service keeps reading meanwhile
                try:
                    store.head_position()
                except Exception as exc:
                    during.append(exc)
                time.sleep(0.5)
            server.restart()
            back = time.monotonic()
            after: list[BaseException] = []
            while True:
                try:
                    assert store.head_position() == 1
                    break
                except Exception as exc:
                    after.append(exc)
                    assert time.monotonic() - back < 30, after
            recovered = time.monotonic() - back
            assert recovered < 6.0, f"reads failed for {recovered:.1f} s after the server was back"
            failures = during + after
            assert during, "no read failed while the server was away"
            assert not [f for f in failures if isinstance(f, PoolTimeout)]
            assert all(isinstance(f, StorageError) for f in failures), failures
            assert all("Retry" in str(f) and store.path in str(f) for f in failures)
            waited = [f for f in failures if "no connection to the server within 2 s" in str(f)]
            assert waited and "Connection refused" in str(waited[0])
            # Appends work too (the writer has a connection of its own).
            assert (
                store.append(
                    "acc-1", "Account", 1, [NewEvent(new_event_id(), "test.Deposited", b"")]
                )
                .events[0]
                .position
                == 2
            )
        finally:
            store.close()


def test_a_read_that_waits_for_a_busy_pool_is_told_the_pool_is_full():
    with postgres.open_store(pool_size=1, connect_timeout=1) as store:
        failures: list[BaseException] = []
        with store.reading():  # the one pooled connection, held

            def read() -> None:
                try:
                    store.head_position()
                except BaseException as exc:
                    failures.append(exc)

            reader = threading.Thread(target=read)
            reader.start()
            reader.join(10)
        assert len(failures) == 1 and isinstance(failures[0], StorageError), failures
        assert "every pooled connection (1 of pool_size 1) stayed in use for 1 s" in str(
            failures[0]
        )
        assert "larger pool_size" in str(failures[0])
        assert store.head_position() == 0  # free again
