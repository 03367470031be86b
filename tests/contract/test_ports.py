"""Every adapter implements the ports the core is written against."""

from __future__ import annotations

from eventstore import CheckpointStore, CommandStore, EventStore, SnapshotStore


def test_store_implements_event_store_port(store):
    assert isinstance(store, EventStore)


def test_store_implements_snapshot_store_port(store):
    assert isinstance(store, SnapshotStore)


def test_store_implements_checkpoint_store_port(store):
    assert isinstance(store, CheckpointStore)


def test_store_implements_command_store_port(store):
    assert isinstance(store, CommandStore)


def test_store_is_a_context_manager_that_closes(adapter, tmp_path):
    with adapter.open(tmp_path) as opened:
        assert opened.head_position() == 0
    assert opened.closed
