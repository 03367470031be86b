"""Ids and names that are not ``str``, on every adapter: the core's ``TypeError`` naming
the call and the argument, the same on each (PostgreSQL raised psycopg's "operator does
not exist: text = smallint"; SQLite answered None, as if nothing were stored)."""

from __future__ import annotations

import pytest

from eventstore import NewEvent, new_event_id


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda s: s.load_stream(5), "load_stream: aggregate_id must be a str, got int 5"),
        (lambda s: s.load_stream_payloads(5.0), "aggregate_id must be a str, got float 5.0"),
        (lambda s: s.stream_version(b"acc-1"), "stream_version: aggregate_id must be a str"),
        (lambda s: s.constraint_owner(1, 2), "constraint_owner: index must be a str, got int 1"),
        (lambda s: s.constraint_owner("email", 2), "value must be a str, got int 2"),
        (lambda s: s.find_command(1, "acc-1"), "find_command: command_id must be a non-empty"),
        (lambda s: s.processed_command(7), "processed_command: command_id must be a non-empty"),
        (lambda s: s.latest_snapshot(1), "latest_snapshot: aggregate_id must be a str"),
        (lambda s: s.list_snapshots(1), "list_snapshots: aggregate_id must be a str"),
        (lambda s: s.keep_last_snapshots(1, 1), "keep_last_snapshots: aggregate_id must be"),
        (lambda s: s.load_checkpoint(3), "load_checkpoint: the checkpoint name must be a non-"),
    ],
)
def test_an_id_or_name_that_is_not_a_str_is_refused_naming_the_argument(store, call, named):
    store.append("acc-1", "Account", 0, [NewEvent(new_event_id(), "test.Opened", b"")])
    with pytest.raises(TypeError, match=named):
        call(store)
    assert store.stream_version("acc-1") == 1  # the store goes on
