"""A PostgreSQL schema that ``eventstore copy`` has not finished filling is refused when
opened, naming the copy and how to resume it; an append that draws a position a stored
event has (the sequence behind the events) says so, instead of a raw duplicate key."""

from __future__ import annotations

import psycopg
import pytest

from eventstore import NewEvent, new_event_id
from eventstore.copy import copy_store
from eventstore.core.errors import InterruptedCopyError, StorageError
from eventstore.postgres import PostgresEventStore
from eventstore.postgres.store import PositionTakenError
from eventstore.sqlite import SQLiteEventStore
from tests.support import postgres


def _event() -> NewEvent:
    return NewEvent(new_event_id(), "test.Deposited", b"x")


class _Stop(BaseException):
    """Ends a copy after its first chunk, as a killed process would."""


def test_a_schema_holding_an_unfinished_copy_is_refused_until_the_copy_is_resumed(tmp_path):
    source = tmp_path / "source.db"
    with SQLiteEventStore(source) as store:
        for n in range(6):
            store.append(f"acc-{n}", "Account", 0, [_event()])
    schema = postgres.fresh_schema()
    url = f"{postgres.server_dsn()}?schema={schema}"

    def stop(_: str) -> None:
        raise _Stop

    with pytest.raises(_Stop):
        copy_store(str(source), url, progress=stop, chunk=4)
    with pytest.raises(InterruptedCopyError) as caught:
        PostgresEventStore(postgres.server_dsn(), schema=schema)
    error = caught.value
    assert isinstance(error, StorageError)
    assert (error.source, error.head) == (str(source), 4)
    assert f"schema {schema}" in str(error) and "after position 4" in str(error)
    assert "running the same command again" in str(error)
    copy_store(str(source), url)  # resumed: it finishes
    with PostgresEventStore(postgres.server_dsn(), schema=schema) as copied:
        assert copied.count_events() == 6
        assert copied.append("acc-new", "Account", 0, [_event()]).events[0].position == 7


def test_an_append_that_draws_a_stored_position_is_named_and_writes_nothing():
    with postgres.open_store() as store:
        for n in range(3):
            store.append(f"acc-{n}", "Account", 0, [_event()])
        # What an unfinished copy leaves: events stored, the sequence still at the start.
        with psycopg.connect(store.dsn, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("SELECT setval({}, 1, false)").format(
                    psycopg.sql.Literal(f'"{store.schema}".events_position_seq')
                )
            )
        with pytest.raises(PositionTakenError) as caught:
            store.append("acc-new", "Account", 0, [_event()])
        error = caught.value
        assert (error.aggregate_id, error.position) == ("acc-new", 1)
        assert "drew position 1, which a stored event already has" in str(error)
        assert "eventstore copy" in str(error) and "setval(" in str(error)
        assert store.stream_version("acc-new") == 0 and store.count_events() == 3
        with psycopg.connect(store.dsn, autocommit=True) as admin:  # the statement it gives
            admin.execute(str(error).split("sequence past the events: ")[1].rstrip(";"))
        assert store.append("acc-new", "Account", 0, [_event()]).events[0].position == 4


def test_a_sqlite_file_holding_an_unfinished_copy_is_refused_until_the_copy_is_resumed(
    tmp_path,
):
    # SQLite opened it as a whole store: appends took positions the copy had still to
    # write, and the resumed copy could no longer verify.
    source = tmp_path / "source.db"
    with SQLiteEventStore(source) as store:
        for n in range(6):
            store.append(f"acc-{n}", "Account", 0, [_event()])
    destination = tmp_path / "copy.db"

    def stop(_: str) -> None:
        raise _Stop

    with pytest.raises(_Stop):
        copy_store(str(source), str(destination), progress=stop, chunk=4)
    with pytest.raises(InterruptedCopyError) as caught:
        SQLiteEventStore(destination)
    assert (caught.value.source, caught.value.head) == (str(source), 4)
    assert "running the same command again" in str(caught.value)
    copy_store(str(source), str(destination))  # resumed: it finishes
    with SQLiteEventStore(destination) as copied:
        assert copied.count_events() == 6
