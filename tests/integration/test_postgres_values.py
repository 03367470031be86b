"""Values PostgreSQL cannot store that SQLite can: NUL bytes in text, unique-constraint
values too long for a btree index. Each is refused at the call with an error naming the
field, the cause and the fix, nothing is written, and no message says to retry
(a real server: tests/support/postgres)."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from eventstore import (
    NewEvent,
    ProjectionContext,
    StreamAppend,
    UniqueConstraint,
    new_event_id,
)
from eventstore.core.errors import EventStoreError
from eventstore.core.projections import ProjectionManager
from eventstore.core.snapshots import Snapshot
from eventstore.postgres import PostgresReadModel
from eventstore.postgres.limits import (
    MAX_CONSTRAINT_BYTES,
    ConstraintValueTooLargeError,
    NulByteError,
    ValueTooLargeError,
)
from tests.support import postgres


def _event(kind: str = "test.Opened", **fields: object) -> NewEvent:
    return NewEvent(new_event_id(), kind, b"x", **fields)  # type: ignore[arg-type]


def _claim(index: str, value: str) -> NewEvent:
    return _event(constraints=(UniqueConstraint(index, value),))


def _random_text(size: int) -> str:
    """ASCII that PostgreSQL cannot compress below the btree limit (hex digits)."""
    return secrets.token_hex(size // 2 + 1)[:size]


@pytest.fixture
def store():
    with postgres.open_store() as opened:
        yield opened


def _assert_nothing_stored(store) -> None:
    assert store.count_events() == 0
    with store.reading() as conn:
        assert conn.execute("SELECT count(*) FROM unique_constraints").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM processed_commands").fetchone() == (0,)


def _assert_says_what_and_never_retry(error: Exception, *words: str) -> None:
    message = str(error)
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    assert "retry" not in message.lower() and "same command id" not in message, message


NUL_APPENDS = {
    "aggregate_id": lambda s: s.append("acc\x00-1", "Account", 0, [_event()]),
    "aggregate_type": lambda s: s.append("acc-1", "Acc\x00ount", 0, [_event()]),
    "events[1].event_id": lambda s: s.append(
        "acc-1", "Account", 0, [_event(), NewEvent("id\x00", "test.Opened", b"x")]
    ),
    "events[0].event_type": lambda s: s.append("acc-1", "Account", 0, [_event("test.\x00")]),
    "command_id": lambda s: s.append("acc-1", "Account", 0, [_event()], command_id="cmd\x00"),
    "events[0] unique constraint index": lambda s: s.append(
        "acc-1", "Account", 0, [_claim("em\x00ail", "ann@example.com")]
    ),
    "unique constraint 'email' value": lambda s: s.append(
        "acc-1", "Account", 0, [_claim("email", "ann\x00@example.com")]
    ),
}


@pytest.mark.parametrize("field", list(NUL_APPENDS))
def test_a_nul_byte_in_an_append_is_refused_naming_the_field_and_nothing_is_written(store, field):
    with pytest.raises(NulByteError) as caught:
        NUL_APPENDS[field](store)
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, EventStoreError)
    assert error.field == field
    _assert_says_what_and_never_retry(
        error, field, "PostgreSQL text cannot hold NUL bytes", "Remove the NUL byte"
    )
    _assert_nothing_stored(store)


def test_a_unit_with_one_member_holding_a_nul_byte_stores_no_member(store):
    unit = [
        StreamAppend("acc-1", "Account", 0, [_claim("email", "ann@example.com")]),
        StreamAppend("acc-2", "Account", 0, [_event("test.\x00Opened")]),
    ]
    with pytest.raises(NulByteError, match=r"appends\[1\]\.events\[0\]\.event_type"):
        store.append_many(unit, command_id="unit-1")
    _assert_nothing_stored(store)
    assert store.constraint_owner("email", "ann@example.com") is None


def test_append_async_and_append_on_refuse_a_nul_byte_too(store):
    import asyncio

    with pytest.raises(NulByteError, match="aggregate_id"):
        asyncio.run(store.append_async("acc\x00", "Account", 0, [_event()]))
    with store.reading() as conn, conn.transaction():
        with pytest.raises(NulByteError, match="command_id"):
            store.append_on(conn, "acc-1", "Account", 0, [_event()], command_id="\x00")
    _assert_nothing_stored(store)


def test_a_nul_byte_in_a_checkpoint_or_snapshot_is_refused_and_nothing_is_written(store):
    with pytest.raises(NulByteError, match="checkpoint name"):
        store.save_checkpoint("totals\x00", 1)
    assert store.list_checkpoints() == {}
    with pytest.raises(NulByteError, match="schema_key"):
        store.save_snapshot(Snapshot("acc-1", "Account", 1, "v1\x00", b"state"))
    assert store.list_snapshots("acc-1") == []


def test_a_read_naming_a_nul_byte_is_refused_at_the_call_not_by_psycopg(store):
    with pytest.raises(NulByteError, match="aggregate_id"):
        store.load_stream("acc\x00")
    with pytest.raises(NulByteError, match="event_types"):
        store.read_all(event_types=["test.\x00"])
    with pytest.raises(NulByteError, match="command_id"):
        store.find_command("cmd\x00", "acc-1")
    with pytest.raises(NulByteError, match="checkpoint name"):
        store.load_checkpoint("totals\x00")


class Failing:
    """A projection whose handler fails with a message quoting a NUL byte."""

    def __init__(self, name: str = "failing") -> None:
        self.name = name

    def reset(self, ctx: ProjectionContext) -> None:
        pass

    def handle(self, event, ctx: ProjectionContext) -> None:
        raise RuntimeError("bad value 'a\x00b'")


def test_a_projection_name_with_a_nul_byte_is_refused_naming_it(store):
    store.append("acc-1", "Account", 0, [_event()])
    with PostgresReadModel(store) as model:
        manager = ProjectionManager(store)
        with pytest.raises(NulByteError, match="projection name"):
            manager.register(Failing("totals\x00"), read_model=model)
        assert store.list_checkpoints() == {}


def test_a_dead_letter_whose_error_quotes_a_nul_byte_is_set_aside(store):
    store.append("acc-1", "Account", 0, [_event()])
    with PostgresReadModel(store) as model:
        manager = ProjectionManager(store)
        manager.register(Failing(), read_model=model, dead_letter=True)
        manager.catch_up()
        letters = model.dead_letters("failing")
    assert [letter.message for letter in letters] == ["bad value 'a\\x00b'"]
    assert model.load_checkpoint("failing") == store.head_position()


def test_a_claim_over_the_index_limit_is_refused_before_anything_is_written(store):
    value = _random_text(3_000)
    with pytest.raises(ConstraintValueTooLargeError) as caught:
        store.append("acc-1", "Account", 0, [_claim("email", value)], command_id="cmd-1")
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, EventStoreError)
    assert (error.index, error.size, error.limit) == ("email", 3_005, MAX_CONSTRAINT_BYTES)
    _assert_says_what_and_never_retry(
        error, "'email'", "3,005 bytes", "2,600 bytes", "btree index", "claim its hash"
    )
    _assert_nothing_stored(store)


def test_a_claim_at_the_limit_is_stored_and_found(store):
    # The limit leaves room for the index row's header: the longest value it allows fits.
    value = _random_text(MAX_CONSTRAINT_BYTES - len("email"))
    store.append("acc-1", "Account", 0, [_claim("email", value)])
    assert store.constraint_owner("email", value) == "acc-1"


def test_a_unit_with_one_claim_over_the_limit_stores_no_member(store):
    unit = [
        StreamAppend("acc-1", "Account", 0, [_claim("email", "ann@example.com")]),
        StreamAppend("acc-2", "Account", 0, [_claim("email", "é" * 1_400)]),  # 2,800 bytes
    ]
    with pytest.raises(ConstraintValueTooLargeError, match="2,805 bytes"):
        store.append_many(unit, command_id="unit-1")
    _assert_nothing_stored(store)


def test_an_id_too_long_for_the_servers_index_is_a_value_error_not_a_retry(store):
    # No bound is checked up front for ids: the server's own refusal (SQLSTATE 54000)
    # is translated, and never as "send it again", which could not work.
    with pytest.raises(ValueTooLargeError) as caught:
        store.append(_random_text(3_000), "Account", 0, [_event()], command_id="cmd-1")
    _assert_says_what_and_never_retry(caught.value, "the aggregate id", "btree index")
    _assert_nothing_stored(store)


def test_an_event_id_too_long_to_index_fails_its_own_append_and_not_its_groups(store):
    def append(i: int) -> object:
        event_id = _random_text(3_000) if i == 7 else new_event_id()
        try:
            return store.append(f"acc-{i}", "Account", 0, [NewEvent(event_id, "test.E", b"x")])
        except ValueTooLargeError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(append, range(48)))
    failed = [i for i, r in enumerate(results) if isinstance(r, ValueTooLargeError)]
    assert failed == [7]
    assert "an event id" in str(results[7])
    assert store.count_events() == 47


def test_a_process_key_with_a_nul_byte_is_refused_before_the_process_is_saved(store):
    from eventstore.core.process_runner import StoredProcess
    from eventstore.postgres.process_runner import PostgresProcessTables

    with PostgresReadModel(store) as model:
        tables = PostgresProcessTables(model)
        with tables.transaction() as conn:
            tables.create(conn)
        with pytest.raises(NulByteError, match="process_id"), tables.transaction() as conn:
            tables.save(conn, "transfers", "t-1\x00", StoredProcess("{}", False, ""), 0)
        with tables.reading() as conn:
            assert conn.execute("SELECT count(*) FROM process_state").fetchone() == (0,)
