"""``PostgresEventStore.close()`` is bounded by ``close_timeout``, even while the server is
frozen (SIGSTOP), and tells each caller in flight what became of its work (a real
embedded server of its own, since it is frozen: tests/support/postgres starts the shared one).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import eventstore
from eventstore import NewEvent, StoreClosedError, new_event_id
from eventstore.postgres import EmbeddedPostgres, PostgresEventStore
from eventstore.postgres.store import DEFAULT_CLOSE_TIMEOUT, AppendInterruptedError
from tests.support import postgres


def _event(event_id: str | None = None) -> NewEvent:
    return NewEvent(event_id or new_event_id(), "test.Deposited", b"x")


def _server_pids(server: EmbeddedPostgres) -> list[int]:
    """The postmaster and its children (backends, checkpointer, ...)."""
    assert server.data_dir is not None
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


@contextlib.contextmanager
def _frozen(server: EmbeddedPostgres) -> Iterator[None]:
    """The whole server stopped (SIGSTOP): connections stay open, nothing answers."""
    pids = _server_pids(server)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _run(outcomes: dict[str, object], name: str, call) -> threading.Thread:  # type: ignore[no-untyped-def]
    def target() -> None:
        try:
            outcomes[name] = call()
        except BaseException as exc:
            outcomes[name] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def _wait_until(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_close_while_the_server_is_frozen_returns_in_time_and_fails_the_work_in_flight():
    with EmbeddedPostgres(fsync=False) as server:
        store = PostgresEventStore(server.dsn, pool_size=2, close_timeout=1)
        store.append("acc-1", "Account", 0, [_event()])
        # An uncommitted row holding event id 'held' makes the next append wait inside
        # its transaction (the position lock taken, its insert sent): in doubt when cut.
        holder = psycopg.connect(server.dsn)
        holder.execute(
            "INSERT INTO eventstore.events (event_id, aggregate_id, aggregate_type, "
            "event_type, version, timestamp, data) VALUES ('held', 'other', 'T', 't', 1, 0, '')"
        )
        outcomes: dict[str, object] = {}
        threads = []
        closer = None
        try:
            threads.append(
                _run(
                    outcomes,
                    "in doubt",
                    lambda: store.append(
                        "acc-2", "Account", 0, [_event("held")], command_id="cmd-2"
                    ),
                )
            )
            with psycopg.connect(server.dsn, autocommit=True) as watcher:
                _wait_until(
                    lambda: (
                        watcher.execute(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted"
                        ).fetchone()[0]  # type: ignore[index]
                        > 0
                    )
                )
            # Queued behind it, for the next group: never sent.
            threads.append(
                _run(
                    outcomes,
                    "queued",
                    lambda: store.append("acc-3", "Account", 0, [_event()], command_id="cmd-3"),
                )
            )
            with _frozen(server):
                threads.append(_run(outcomes, "read", lambda: store.stream_version("acc-1")))
                time.sleep(0.3)
                assert not outcomes, "the server is frozen: nothing can have answered"
                started = time.monotonic()
                closer = _run(outcomes, "close", store.close)
                closer.join(6)
                took = time.monotonic() - started
                assert not closer.is_alive(), "close() hangs on a frozen server"
                for thread in threads:
                    thread.join(3)
        finally:
            holder.rollback()
            holder.close()
        assert took < 1 + 3, f"close() took {took:.1f} s with close_timeout=1"
        assert outcomes["close"] is None
        in_doubt = outcomes["in doubt"]
        assert isinstance(in_doubt, AppendInterruptedError), repr(in_doubt)
        assert isinstance(in_doubt, StoreClosedError)  # UNAVAILABLE over a wire: resend
        message = str(in_doubt)
        assert "'acc-2'" in message and "may or may not have committed" in message
        assert "with the same command id" in message and "close_timeout (1 s)" in message
        queued = outcomes["queued"]
        assert type(queued) is StoreClosedError, repr(queued)  # nothing of it was sent
        assert isinstance(outcomes["read"], StoreClosedError), repr(outcomes["read"])
        # What the message says to do works: the same command id, sent again, is stored once.
        with PostgresEventStore(server.dsn) as reopened:
            first = reopened.append("acc-2", "Account", 0, [_event("held")], command_id="cmd-2")
            again = reopened.append("acc-2", "Account", 0, [_event("held")], command_id="cmd-2")
            assert again.already_processed and again.events == first.events
            assert reopened.stream_version("acc-2") == 1
            assert reopened.stream_version("acc-3") == 0


def test_close_timeout_defaults_to_a_few_seconds_and_comes_from_the_url_too():
    with postgres.open_store() as store:
        assert store.close_timeout == DEFAULT_CLOSE_TIMEOUT == 5.0
        url = f"{store.dsn}?schema={store.schema}&close_timeout=0.5"
        with eventstore.open_store(url) as opened:
            assert opened.close_timeout == 0.5
    for wrong, error in ((-1, ValueError), (float("nan"), ValueError), ("5", TypeError)):
        with pytest.raises(error, match="close_timeout"):
            PostgresEventStore("postgresql://x@127.0.0.1:1/x", close_timeout=wrong)  # type: ignore[arg-type]


def test_close_of_an_idle_store_does_not_wait_for_its_timeout():
    with postgres.open_store(close_timeout=30) as store:
        store.append("acc-1", "Account", 0, [_event()])
        store.stream_version("acc-1")
        started = time.monotonic()
        store.close()
        assert time.monotonic() - started < 2
