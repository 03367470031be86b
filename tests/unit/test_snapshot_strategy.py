"""Snapshot strategies decide from (version, events since the last snapshot)."""

from __future__ import annotations

import pytest

from eventstore import EveryNEvents
from eventstore.core.snapshots import SnapshotStats


def test_every_n_events_fires_once_n_events_passed():
    every3 = EveryNEvents(3)
    assert [every3(v, v) for v in range(1, 5)] == [False, False, True, True]


def test_every_n_events_counts_from_the_last_snapshot_not_the_version():
    assert EveryNEvents(10)(25, 5) is False
    assert EveryNEvents(10)(30, 10) is True


def test_every_one_event_always_fires():
    assert EveryNEvents(1)(1, 1) is True


@pytest.mark.parametrize("n", [0, -3])
def test_every_n_events_needs_a_positive_n(n):
    with pytest.raises(ValueError, match="n >= 1"):
        EveryNEvents(n)


def test_every_n_events_repr():
    assert repr(EveryNEvents(4)) == "EveryNEvents(4)"


def test_stats_average_of_no_snapshots_is_zero():
    assert SnapshotStats(0, 0, 0).average_bytes == 0.0
    assert SnapshotStats(4, 2, 10).average_bytes == 2.5
