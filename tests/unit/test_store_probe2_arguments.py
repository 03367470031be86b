"""Wrong arguments to the SQLite store's and the repository's public methods fail at the
call, naming the argument and what it accepts (core/arguments.py), instead of a raw
``TypeError``, ``sqlite3`` or ``UnicodeEncodeError`` deep inside, or being taken silently."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from eventstore import NewEvent, new_event_id
from eventstore.core.errors import InvalidAggregateIdError
from eventstore.sqlite import SQLiteEventStore
from tests.support.bank import Account, account_repository

#: Text as decoding bytes with errors='surrogateescape' leaves it: not storable as UTF-8.
LONE = b"id-\xff".decode("utf-8", "surrogateescape")


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with SQLiteEventStore(tmp_path / "args.db") as opened:
        yield opened


def _event() -> NewEvent:
    return NewEvent(new_event_id(), "t.E", b"")


def _count(store: SQLiteEventStore) -> int:
    return store.count_events()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda s: s.load_stream("b1", "2"),
            TypeError,
            "load_stream: after_version must be an int",
        ),
        (lambda s: s.load_stream("b1", 0.5), TypeError, "after_version must be an int >= 0"),
        (lambda s: s.load_stream("b1", -5), ValueError, "after_version must be an int >= 0"),
        (lambda s: s.load_stream("b1", 0, "3"), TypeError, "up_to_version must be an int >= 0"),
        (lambda s: s.load_stream("b1", 0, -1), ValueError, "up_to_version must be an int >= 0"),
        (lambda s: s.load_stream(["b1"]), TypeError, "load_stream: aggregate_id must be a str"),
        (lambda s: s.load_stream_payloads("b1", -1), ValueError, "after_version must be"),
        (lambda s: s.stream_version(["b1"]), TypeError, "stream_version: aggregate_id must be a"),
        (lambda s: s.find_command("c1", None), TypeError, "find_command: aggregate_id must be a"),
        (lambda s: s.find_command(None, "b1"), TypeError, "find_command: command_id must be"),
        (lambda s: s.processed_command(7), TypeError, "processed_command: command_id must be"),
        (
            lambda s: s.save_checkpoint(None, 1),
            TypeError,
            "checkpoint name must be a non-empty str",
        ),
        (lambda s: s.save_checkpoint("", 1), ValueError, "needs a non-empty checkpoint name"),
        (lambda s: s.load_checkpoint(None), TypeError, "checkpoint name must be a non-empty str"),
        (lambda s: s.delete_checkpoint(5), TypeError, "checkpoint name must be a non-empty str"),
        (
            lambda s: s.delete_expired_commands("2024-01-01"),
            TypeError,
            "delete_expired_commands: now must be a datetime",
        ),
        (lambda s: s.sweep_expired_commands(-1), ValueError, "batch must be >= 1"),
        (lambda s: s.sweep_expired_commands(0), ValueError, "batch must be >= 1"),
        (lambda s: s.sweep_expired_commands("100"), TypeError, "batch must be an int"),
    ],
)
def test_a_read_or_maintenance_argument_of_the_wrong_type_or_value_is_named(
    store, call, error, message
) -> None:
    with pytest.raises(error, match=message):
        call(store)


def test_an_empty_checkpoint_name_is_not_saved(store) -> None:
    with pytest.raises(ValueError):
        store.save_checkpoint("", 1)
    assert store.list_checkpoints() == {}


def test_a_negative_command_ttl_is_refused_naming_the_ttl_and_nothing_is_written(store) -> None:
    for ttl in (timedelta.min, timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="command_ttl must be 0 or more"):
            store.append("a", "T", 0, [_event()], command_id="c", command_ttl=ttl)
    assert _count(store) == 0 and store.processed_command("c") is None
    # 0 and the longest TTL stay allowed.
    store.append("a", "T", 0, [_event()], command_id="c0", command_ttl=timedelta(0))
    store.append("a", "T", 1, [_event()], command_id="cm", command_ttl=timedelta.max)
    assert _count(store) == 2


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"aggregate_id": LONE}, "aggregate_id"),
        ({"aggregate_type": LONE}, "aggregate_type"),
        ({"command_id": LONE}, "command_id"),
        ({"event_id": LONE}, r"events\[0\]\.event_id"),
        ({"event_type": LONE}, r"events\[0\]\.event_type"),
    ],
)
def test_text_with_a_lone_surrogate_is_refused_naming_it_and_nothing_is_written(
    store, kwargs, name
) -> None:
    event = NewEvent(kwargs.get("event_id", new_event_id()), kwargs.get("event_type", "t.E"), b"")
    with pytest.raises(ValueError, match=f"{name} .* lone surrogate") as caught:
        store.append(
            kwargs.get("aggregate_id", "a"),
            kwargs.get("aggregate_type", "T"),
            0,
            [event],
            command_id=kwargs.get("command_id"),
        )
    assert not isinstance(caught.value, UnicodeEncodeError)
    assert _count(store) == 0


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s.load_stream(LONE),
        lambda s: s.load_stream_payloads(LONE),
        lambda s: s.stream_version(LONE),
        lambda s: s.find_command("c", LONE),
        lambda s: s.find_command(LONE, "a"),
        lambda s: s.load_checkpoint(LONE),
    ],
)
def test_a_read_of_text_with_a_lone_surrogate_is_refused_naming_it(store, read) -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        read(store)


def test_ids_outside_ascii_that_are_valid_text_still_work(store) -> None:
    store.append("kонто-ü", "Kontö", 0, [NewEvent(new_event_id(), "t.Ë", b"")], command_id="ç")
    assert store.stream_version("kонто-ü") == 1
    assert [e.event_type for e in store.load_stream("kонто-ü")] == ["t.Ë"]
    assert store.find_command("ç", "kонто-ü") is not None
    store.save_checkpoint("prøjection", 1)
    assert store.load_checkpoint("prøjection") == 1


def test_the_repository_refuses_an_id_with_a_lone_surrogate_as_an_invalid_aggregate_id(
    store,
) -> None:
    repo = account_repository(store)
    for call in (lambda: repo.load(LONE), lambda: repo.exists(LONE)):
        with pytest.raises(InvalidAggregateIdError, match="lone surrogate") as caught:
            call()
        assert caught.value.aggregate_id == LONE and caught.value.aggregate_type == "Account"
    account = Account("acc-1")
    account.open("ann")
    with pytest.raises(ValueError, match="command_id .* lone surrogate"):
        repo.save_with_command(account, LONE)
    assert _count(store) == 0


@pytest.mark.parametrize("bad", [None, "acc-1", 5])
def test_saving_something_that_is_not_an_aggregate_is_refused_naming_it(store, bad) -> None:
    repo = account_repository(store)
    for call in (
        lambda: repo.save(bad),
        lambda: repo.save_with_command(bad, "c-1"),
        lambda: repo.save_snapshot(bad),
    ):
        with pytest.raises(TypeError, match="aggregate must be an AggregateRoot"):
            call()
    assert _count(store) == 0


def test_an_async_save_of_something_that_is_not_an_aggregate_is_refused(store) -> None:
    import asyncio

    repo = account_repository(store)
    with pytest.raises(TypeError, match="Repository.save_async: aggregate must be"):
        asyncio.run(repo.save_async(None))  # type: ignore[arg-type]
