"""Reading the global log: after a position (exclusive), limits, type filters, paging, head."""

from __future__ import annotations

import pytest

from .builders import DEPOSITED, OPENED, WITHDRAWN, append_deposits, deposit, opened, withdrawal


def test_empty_store_has_head_position_zero(store):
    assert store.head_position() == 0
    assert store.read_all() == []


def test_head_position_is_the_last_stored_position(store):
    append_deposits(store, "a", 3)
    assert store.head_position() == store.read_all()[-1].position


def test_read_all_from_zero_returns_everything_in_position_order(store):
    append_deposits(store, "a", 2)
    append_deposits(store, "b", 2)
    log = store.read_all(0)
    assert len(log) == 4
    assert [e.position for e in log] == sorted(e.position for e in log)


def test_read_all_after_a_position_excludes_the_event_at_it(store):
    append_deposits(store, "a", 5)
    log = store.read_all()
    third = log[2].position
    after = store.read_all(third)
    assert [e.position for e in after] == [e.position for e in log[3:]]
    assert third not in {e.position for e in after}


def test_read_all_after_head_position_is_empty(store):
    append_deposits(store, "a", 3)
    assert store.read_all(store.head_position()) == []


def test_read_all_limit_returns_the_first_events_after_the_position(store):
    append_deposits(store, "a", 6)
    log = store.read_all()
    assert store.read_all(log[1].position, limit=3) == log[2:5]


def test_read_all_limit_larger_than_the_rest_returns_the_rest(store):
    append_deposits(store, "a", 3)
    assert len(store.read_all(limit=100)) == 3


def test_read_all_rejects_a_limit_below_one(store):
    with pytest.raises(ValueError, match="limit"):
        store.read_all(limit=0)


def test_read_all_filters_by_event_type(store):
    store.append("a", "Account", 0, [opened(), deposit(), withdrawal(), deposit()])
    store.append("b", "Account", 0, [opened(), withdrawal()])
    deposits = store.read_all(event_types=[DEPOSITED])
    assert [(e.aggregate_id, e.version) for e in deposits] == [("a", 2), ("a", 4)]
    both = store.read_all(event_types=[OPENED, WITHDRAWN])
    assert [(e.aggregate_id, e.version) for e in both] == [("a", 1), ("a", 3), ("b", 1), ("b", 2)]


def test_read_all_filter_and_limit_combine(store):
    store.append("a", "Account", 0, [deposit(), opened(), deposit(), deposit(), opened()])
    page = store.read_all(event_types=[DEPOSITED], limit=2)
    assert [e.version for e in page] == [1, 3]
    rest = store.read_all(page[-1].position, event_types=[DEPOSITED], limit=2)
    assert [e.version for e in rest] == [4]


def test_read_all_with_an_empty_type_filter_returns_nothing(store):
    append_deposits(store, "a", 2)
    assert store.read_all(event_types=[]) == []


def test_readers_advancing_by_last_position_see_each_event_once(store):
    append_deposits(store, "a", 7)
    seen = []
    position = 0
    while page := store.read_all(position, limit=3):
        seen.extend(page)
        position = page[-1].position
    assert seen == store.read_all()


@pytest.mark.parametrize("count,page_size", [(25, 10), (20, 5), (3, 1), (0, 4), (7, 100)])
def test_iter_all_yields_each_event_once_across_page_boundaries(store, count, page_size):
    if count:
        store.append("a", "Account", 0, [deposit(i) for i in range(count)])
    events = list(store.iter_all(page_size=page_size))
    assert events == store.read_all()
    assert len({e.position for e in events}) == count


def test_iter_all_after_a_position_is_exclusive(store):
    append_deposits(store, "a", 6)
    log = store.read_all()
    assert list(store.iter_all(log[3].position, page_size=2)) == log[4:]


def test_iter_all_filters_by_event_type_across_pages(store):
    store.append("a", "Account", 0, [opened(), *(deposit() for _ in range(9)), withdrawal()])
    store.append("b", "Account", 0, [deposit(), opened()])
    got = list(store.iter_all(event_types=[DEPOSITED], page_size=4))
    assert [(e.aggregate_id, e.version) for e in got] == [
        *(("a", v) for v in range(2, 11)),
        ("b", 1),
    ]


def test_iter_all_sees_events_appended_while_paging(store):
    append_deposits(store, "a", 4)
    seen = []
    for event in store.iter_all(page_size=2):
        seen.append(event)
        if len(seen) == 1:
            append_deposits(store, "b", 3)
    assert len(seen) == 7
    assert seen == store.read_all()
