"""Event ids: deterministic for commands, UUIDv7 (time-ordered) otherwise."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from eventstore import deterministic_event_id, new_command_id, new_event_id


def test_deterministic_event_id_is_stable_across_calls():
    assert deterministic_event_id("cmd-1", "acc-1", 0) == deterministic_event_id(
        "cmd-1", "acc-1", 0
    )


def test_deterministic_event_id_is_a_fixed_value():
    # Changing the scheme breaks recognition of retries stored by earlier versions.
    assert deterministic_event_id("cmd-1", "acc-1", 0) == str(
        uuid.uuid5(uuid.UUID("6f1c1d52-5a0e-4f59-9a53-2d1f4f5e7a10"), "5:cmd-15:acc-10")
    )


def test_deterministic_event_id_differs_by_command_aggregate_and_index():
    ids = {
        deterministic_event_id(c, a, i)
        for c in ("cmd-1", "cmd-2")
        for a in ("acc-1", "acc-2")
        for i in (0, 1, 2)
    }
    assert len(ids) == 12


def test_deterministic_event_id_fields_do_not_run_together():
    assert deterministic_event_id("ab", "c", 0) != deterministic_event_id("a", "bc", 0)
    assert deterministic_event_id("a", "b1", 1) != deterministic_event_id("a", "b", 11)


def test_new_event_id_is_a_uuid_version_7():
    value = uuid.UUID(new_event_id())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_new_event_id_carries_the_current_unix_milliseconds():
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(new_event_id())
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after


def test_new_event_ids_are_ordered_by_time():
    ids = []
    for _ in range(5):
        ids.append(new_event_id())
        time.sleep(0.002)
    assert ids == sorted(ids)


def test_new_event_ids_are_unique():
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_new_command_id_is_a_uuid_version_7():
    assert uuid.UUID(new_command_id()).version == 7


def test_deterministic_id_of_a_uuid7_command_keeps_the_commands_time_prefix():
    command_id = new_command_id()
    event_id = deterministic_event_id(command_id, "acc-1", 0)
    assert event_id[:13] == command_id[:13]
    assert uuid.UUID(event_id).version == 8
    assert event_id == deterministic_event_id(command_id, "acc-1", 0)
    assert event_id != deterministic_event_id(command_id, "acc-1", 1)
    assert event_id != deterministic_event_id(command_id, "acc-2", 0)


def test_a_tenants_uuid7_command_keeps_the_time_prefix_and_differs_from_the_plain_one():
    command_id = new_command_id()
    scoped = deterministic_event_id(f"acme::{command_id}", "acme::acc-1", 0)
    assert scoped[:13] == command_id[:13]
    assert uuid.UUID(scoped).version == 8
    assert scoped != deterministic_event_id(command_id, "acme::acc-1", 0)
    # Only a whole UUIDv7, alone or after "::", lends its prefix.
    assert uuid.UUID(deterministic_event_id(f"x{command_id}", "a", 0)).version == 5
    assert uuid.UUID(deterministic_event_id(f"{command_id}x", "a", 0)).version == 5


def test_deterministic_ids_of_later_uuid7_commands_sort_later():
    first = new_command_id()
    time.sleep(0.002)
    second = new_command_id()
    assert deterministic_event_id(first, "a", 5) < deterministic_event_id(second, "a", 0)


def test_deterministic_ids_of_different_command_and_aggregate_pairs_differ():
    # Joining the parts with a separator would make these two spell the same name.
    assert deterministic_event_id("a\x1fb", "c", 0) != deterministic_event_id("a", "b\x1fc", 0)
    assert deterministic_event_id("a1", "b", 0) != deterministic_event_id("a", "1b", 0)


def test_new_event_ids_stay_unique_across_chunks_of_random_bytes_and_threads():
    import threading

    made: list[list[str]] = [[] for _ in range(4)]

    def make(n: int) -> None:
        made[n].extend(new_event_id() for _ in range(1_000))  # several 4 KiB chunks

    threads = [threading.Thread(target=make, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for own in made for i in own]
    assert len(set(ids)) == len(ids) == 4_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_makes_ids_of_its_own_not_its_parents_next_ones():
    new_event_id()  # the parent now holds a chunk of random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, ",".join(new_event_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent = [new_event_id() for _ in range(5)]
    # The random part (after the 48-bit time and the version digit) must differ.
    assert not {i[15:] for i in child} & {i[15:] for i in parent}
