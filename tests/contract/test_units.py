"""Several aggregates in one unit (``append_many``, ``UnitOfWork``) on every store."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from eventstore import (
    DEFAULT_COMMAND_TTL,
    CommandIdConflictError,
    ConcurrencyError,
    StreamAppend,
    UniqueConstraint,
    UnitOfWork,
)
from eventstore.tenancy import with_tenant
from tests.support.bank import Account, account_repository

from .builders import command_events, deposit, log_contents, opened

TINY_TTL = timedelta(microseconds=1)


def _unit(command_id: str, versions: dict[str, int], count: int = 1) -> list[StreamAppend]:
    return [
        StreamAppend(a, "Account", v, command_events(command_id, a, count))
        for a, v in versions.items()
    ]


def test_append_many_writes_every_stream_in_one_unit(store):
    result = store.append_many(
        [
            StreamAppend("a", "Account", 0, [opened("ann"), deposit(5)]),
            StreamAppend("b", "Account", 0, [opened("bob")]),
        ]
    )
    assert result.aggregate_ids == ["a", "b"]
    assert [e.version for e in result["a"].events] == [1, 2]
    assert [e.version for e in result["b"].events] == [1]
    assert [e.position for e in result.events] == sorted(e.position for e in store.read_all())
    assert store.stream_version("a") == 2 and store.stream_version("b") == 1
    assert result.already_processed is False


def test_a_conflict_in_the_last_stream_writes_nothing_in_any(store):
    store.append("c", "Account", 0, [opened("cid")])
    before = log_contents(store)
    with pytest.raises(ConcurrencyError) as caught:
        store.append_many(
            [
                StreamAppend("a", "Account", 0, [opened("ann")]),
                StreamAppend("b", "Account", 0, [opened("bob")]),
                StreamAppend("c", "Account", 0, [deposit(1)]),  # c is at version 1
            ],
            command_id="unit-1",
        )
    assert (caught.value.aggregate_id, caught.value.expected, caught.value.actual) == ("c", 0, 1)
    assert log_contents(store) == before
    assert store.processed_command("unit-1") is None


def test_a_constraint_in_one_stream_writes_nothing_in_any(store):
    store.append("x", "Account", 0, [opened("ann", constraints=[UniqueConstraint("owner", "ann")])])
    before = log_contents(store)
    with pytest.raises(Exception) as caught:
        store.append_many(
            [
                StreamAppend("a", "Account", 0, [deposit(1)]),
                StreamAppend(
                    "b",
                    "Account",
                    0,
                    [opened("ann", constraints=[UniqueConstraint("owner", "ann")])],
                ),
            ]
        )
    assert type(caught.value).__name__ == "UniqueConstraintError"
    assert log_contents(store) == before
    assert store.constraint_owner("owner", "ann") == "x"


def test_a_unit_retried_with_its_command_id_returns_every_original_result(store):
    first = store.append_many(_unit("t-1", {"a": 0, "b": 0}, 2), command_id="t-1")
    head = store.head_position()
    again = store.append_many(_unit("t-1", {"a": 0, "b": 0}, 2), command_id="t-1")
    assert again.already_processed is True
    for aggregate in ("a", "b"):
        assert list(again[aggregate].events) == list(first[aggregate].events)
    assert store.head_position() == head
    record = store.processed_command("t-1")
    assert record is not None and record.aggregate_id == "a"
    assert [(a, list(ids)) for a, ids in record.unit] == [
        (a, [e.event_id for e in first[a].events]) for a in ("a", "b")
    ]


def test_one_aggregate_of_a_unit_retried_alone_gets_its_own_events(store):
    first = store.append_many(_unit("t-2", {"a": 0, "b": 0}), command_id="t-2")
    alone = store.append("b", "Account", 0, command_events("t-2", "b", 1), command_id="t-2")
    assert alone.already_processed is True
    assert list(alone.events) == list(first["b"].events)
    assert store.find_command("t-2", "b").events == first["b"].events


def test_the_unit_command_id_on_an_aggregate_outside_the_unit_is_a_conflict(store):
    store.append_many(_unit("t-3", {"a": 0, "b": 0}), command_id="t-3")
    before = log_contents(store)
    with pytest.raises(CommandIdConflictError) as caught:
        store.append("c", "Account", 0, command_events("t-3", "c", 1), command_id="t-3")
    assert caught.value.aggregate_id == "c"
    with pytest.raises(CommandIdConflictError):
        store.append_many(_unit("t-3", {"a": 0, "c": 0}), command_id="t-3")
    assert log_contents(store) == before


def test_a_unit_whose_record_expired_is_recognised_by_its_event_ids(store):
    first = store.append_many(
        _unit("t-4", {"a": 0, "b": 0}), command_id="t-4", command_ttl=TINY_TTL
    )
    time.sleep(0.002)
    store.delete_expired_commands()
    assert store.processed_command("t-4") is None
    again = store.append_many(_unit("t-4", {"a": 0, "b": 0}), command_id="t-4")
    assert again.already_processed is True
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert store.count_events() == 2


def test_a_tenants_unit_whose_record_expired_is_recognised_by_its_event_ids(store):
    repo = account_repository(store, tenant_isolation=True)

    def transfer() -> UnitOfWork:
        a, b = Account("acc-a"), Account("acc-b")
        a.open("ann", 100)
        b.open("bob", 0)
        uow = UnitOfWork(store, command_id="open-both")
        uow.save(a, repo)
        uow.save(b, repo)
        return uow

    with with_tenant("acme"):
        first = transfer().commit()
        store.delete_expired_commands(datetime.now(UTC) + DEFAULT_COMMAND_TTL * 2)
        again = transfer().commit()
    assert again.already_processed is True
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert store.count_events() == 2


def test_append_many_async_gives_the_same_answers(store):
    async def run():
        first = await store.append_many_async(_unit("t-5", {"a": 0, "b": 0}), command_id="t-5")
        again = await store.append_many_async(_unit("t-5", {"a": 0, "b": 0}), command_id="t-5")
        return first, again

    first, again = asyncio.run(run())
    assert again.already_processed and again["b"].events == first["b"].events


def test_a_unit_of_work_saves_two_aggregates_together(store):
    repo = account_repository(store)
    a, b = Account("acc-a"), Account("acc-b")
    a.open("ann", 100)
    b.open("bob", 0)
    repo.save(a)
    repo.save(b)
    a, b = repo.load("acc-a"), repo.load("acc-b")
    with UnitOfWork(store, command_id="transfer-1") as uow:
        a.withdraw(30)
        b.deposit(30)
        repo.save(a, unit=uow)
        uow.save(b, repo)
        assert store.stream_version("acc-a") == 1  # nothing written before the block ends
    assert uow.result is not None and not uow.result.already_processed
    assert (a.version, b.version) == (2, 2)
    assert repo.load("acc-a").state.balance == 70 and repo.load("acc-b").state.balance == 30

    # The same unit again (a client retry after a lost reply): nothing new, objects as stored.
    a2, b2 = repo.load("acc-a"), repo.load("acc-b")
    with UnitOfWork(store, command_id="transfer-1") as uow:
        a2.withdraw(30)
        b2.deposit(30)
        repo.save(a2, unit=uow)
        repo.save(b2, unit=uow)
    assert uow.result.already_processed is True
    assert (a2.state.balance, b2.state.balance) == (70, 30)
    assert not a2.uncommitted_events and not b2.uncommitted_events


def test_a_failing_block_writes_nothing(store):
    repo = account_repository(store)
    a = Account("acc-a")
    a.open("ann", 10)
    with pytest.raises(RuntimeError), UnitOfWork(store) as uow:
        repo.save(a, unit=uow)
        raise RuntimeError("the business check failed")
    assert store.count_events() == 0


def test_a_unit_of_work_commits_async(store):
    repo = account_repository(store)
    a, b = Account("acc-a"), Account("acc-b")
    a.open("ann", 10)
    b.open("bob", 0)

    async def run():
        async with UnitOfWork(store, command_id="open-both") as uow:
            repo.save(a, unit=uow)
            repo.save(b, unit=uow)
        return uow.result

    result = asyncio.run(run())
    assert result.aggregate_ids == ["acc-a", "acc-b"] and (a.version, b.version) == (1, 1)
    assert store.processed_command("open-both").aggregate_id == "acc-a"


def test_append_many_refuses_an_aggregate_twice_and_an_empty_unit(store):
    with pytest.raises(ValueError, match="appears twice"):
        store.append_many(
            [StreamAppend("a", "Account", 0, [deposit()]), StreamAppend("a", "Account", 1, [])]
        )
    with pytest.raises(ValueError, match="at least one"):
        store.append_many([])
    with pytest.raises(TypeError, match="StreamAppend"):
        store.append_many([("a", "Account", 0, [])])


def test_units_and_appends_from_many_threads_commit_together_and_fail_alone(store):
    import threading

    errors: list[BaseException] = []
    conflicts: list[str] = []

    def units(worker: int) -> None:
        try:
            for n in range(10):
                pair = {f"w{worker}-a": n, f"w{worker}-b": n}
                store.append_many(_unit(f"u{worker}-{n}", pair), command_id=f"u{worker}-{n}")
                try:  # a stale unit: refused whole, its neighbours in the group unharmed
                    store.append_many(
                        [
                            StreamAppend(f"w{worker}-c", "Account", n, [deposit()]),
                            StreamAppend(f"w{worker}-a", "Account", 0, [deposit()]),
                        ]
                    )
                except ConcurrencyError:
                    conflicts.append(f"{worker}-{n}")
                store.append(f"w{worker}-solo", "Account", n, [deposit()])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=units, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(conflicts) == 40
    for worker in range(4):
        assert store.stream_version(f"w{worker}-a") == 10
        assert store.stream_version(f"w{worker}-b") == 10
        assert store.stream_version(f"w{worker}-c") == 0
        assert store.stream_version(f"w{worker}-solo") == 10
    again = store.append_many(_unit("u0-3", {"w0-a": 3, "w0-b": 3}), command_id="u0-3")
    assert again.already_processed


@pytest.mark.parametrize("claimer_first", [False, True], ids=["releaser-first", "claimer-first"])
def test_a_unit_moves_a_unique_value_between_members_in_either_order(store, claimer_first):
    # Claims were applied member by member, so the claimer saved first was refused
    # ("have the owner release it first") though the owner released it in the same unit.
    store.append("wa", "Bin", 0, [opened("a", constraints=[UniqueConstraint("bin", "B7")])])
    release = StreamAppend(
        "wa", "Bin", 1, [deposit(constraints=[UniqueConstraint.release("bin", "B7")])]
    )
    claim = StreamAppend("wb", "Bin", 0, [opened("b", constraints=[UniqueConstraint("bin", "B7")])])
    store.append_many([claim, release] if claimer_first else [release, claim])
    assert store.constraint_owner("bin", "B7") == "wb"


def test_a_unit_swaps_two_values_between_its_members(store):
    store.append("p", "Bin", 0, [opened("p", constraints=[UniqueConstraint("bin", "X")])])
    store.append("q", "Bin", 0, [opened("q", constraints=[UniqueConstraint("bin", "Y")])])
    swap = [
        (
            "p",
            [UniqueConstraint.release("bin", "X"), UniqueConstraint("bin", "Y")],
        ),
        (
            "q",
            [UniqueConstraint.release("bin", "Y"), UniqueConstraint("bin", "X")],
        ),
    ]
    store.append_many([StreamAppend(a, "Bin", 1, [deposit(constraints=cons)]) for a, cons in swap])
    assert (store.constraint_owner("bin", "X"), store.constraint_owner("bin", "Y")) == ("q", "p")


def test_a_member_that_claims_then_releases_in_its_own_order_is_accepted_as_alone(store):
    # Renamed twice in one command (claim B, release A, then claim C, release B): a lone
    # append takes it; the unit refused it when it put every release before every claim.
    store.append("u1", "Bin", 0, [opened("a", constraints=[UniqueConstraint("name", "A")])])
    renames = [
        deposit(constraints=[UniqueConstraint("name", "B"), UniqueConstraint.release("name", "A")]),
        deposit(constraints=[UniqueConstraint("name", "C"), UniqueConstraint.release("name", "B")]),
    ]
    store.append_many(
        [
            StreamAppend("u1", "Bin", 1, renames),
            StreamAppend("other", "Bin", 0, [opened("o")]),
        ]
    )
    owners = [store.constraint_owner("name", v) for v in ("A", "B", "C")]
    assert owners == [None, None, "u1"]


def test_a_stale_unit_is_a_concurrency_error_whatever_its_constraints(store):
    store.append("u1", "Bin", 0, [opened("a", constraints=[UniqueConstraint("name", "A")])])
    store.append(  # another writer renames u1 first
        "u1",
        "Bin",
        1,
        [
            deposit(
                constraints=[UniqueConstraint("name", "B"), UniqueConstraint.release("name", "A")]
            )
        ],
    )
    stale = StreamAppend(
        "u1",
        "Bin",
        1,
        [
            deposit(
                constraints=[UniqueConstraint("name", "C"), UniqueConstraint.release("name", "A")]
            )
        ],
    )
    with pytest.raises(ConcurrencyError):
        store.append_many([StreamAppend("other", "Bin", 0, [opened("o")]), stale])
    assert store.constraint_owner("name", "B") == "u1" and store.stream_version("other") == 0
