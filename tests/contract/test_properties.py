"""Property tests: random runs of appends agree with a model of the store.

Each example runs a random sequence of appends (right and wrong expected
versions, with and without command ids, repeated command ids, empty appends)
over a few aggregates on a fresh store, checks every result against a plain
Python model, and at the end checks the version and position invariants of
the whole log.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import CommandIdConflictError, ConcurrencyError, deterministic_event_id

from .adapters import ADAPTERS, Adapter
from .builders import deposit

AGGREGATES = ("a", "b", "c")
COMMANDS = ("c1", "c2", "c3", "c4", "c5")


@dataclass(frozen=True)
class Op:
    aggregate: str
    version_offset: int  # 0: the right expected version; otherwise that much off
    count: int
    command_id: str | None


ops = st.builds(
    Op,
    aggregate=st.sampled_from(AGGREGATES),
    version_offset=st.sampled_from([0, 0, 0, -1, 1, 2]),
    count=st.integers(min_value=0, max_value=3),
    command_id=st.none() | st.sampled_from(COMMANDS),
)


@dataclass
class Model:
    """What the store should hold: per aggregate its event ids, per command its aggregate
    and event ids."""

    streams: dict[str, list[str]] = field(default_factory=lambda: {a: [] for a in AGGREGATES})
    commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    command_aggregates: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def _run(store, program: list[Op]) -> None:  # type: ignore[no-untyped-def]
    model = Model()
    last_position = 0
    for op in program:
        current = len(model.streams[op.aggregate])
        expected = max(0, current + op.version_offset)
        events = [
            deposit(i, event_id=deterministic_event_id(op.command_id, op.aggregate, i))
            if op.command_id
            else deposit(i)
            for i in range(op.count)
        ]
        head_before = store.head_position()
        if op.command_id in model.commands and model.command_aggregates[op.command_id] != (
            op.aggregate
        ):
            with pytest.raises(CommandIdConflictError):
                store.append(op.aggregate, "A", expected, events, command_id=op.command_id)
            assert store.head_position() == head_before
            continue
        if op.command_id in model.commands:
            result = store.append(op.aggregate, "A", expected, events, command_id=op.command_id)
            assert result.already_processed
            assert tuple(e.event_id for e in result.events) == model.commands[op.command_id]
            assert store.head_position() == head_before
            continue
        if events and expected != current:
            with pytest.raises(ConcurrencyError) as info:
                store.append(op.aggregate, "A", expected, events, command_id=op.command_id)
            assert (info.value.expected, info.value.actual) == (expected, current)
            assert store.head_position() == head_before
            continue
        result = store.append(op.aggregate, "A", expected, events, command_id=op.command_id)
        assert not result.already_processed
        assert [e.version for e in result.events] == list(
            range(current + 1, current + 1 + op.count)
        )
        positions = [e.position for e in result.events]
        assert positions == sorted(set(positions))
        assert all(p > last_position for p in positions)
        if positions:
            last_position = positions[-1]
        ids = tuple(e.event_id for e in events)
        model.streams[op.aggregate].extend(ids)
        model.log.extend(ids)
        if op.command_id:
            model.commands[op.command_id] = ids
            model.command_aggregates[op.command_id] = op.aggregate
    _check_invariants(store, model)


def _check_invariants(store, model: Model) -> None:  # type: ignore[no-untyped-def]
    log = store.read_all()
    assert [e.event_id for e in log] == model.log
    positions = [e.position for e in log]
    assert positions == sorted(set(positions)), "positions unique and increasing"
    assert store.head_position() == (positions[-1] if positions else 0)
    for aggregate, ids in model.streams.items():
        stream = store.load_stream(aggregate)
        assert [e.event_id for e in stream] == ids
        assert [e.version for e in stream] == list(range(1, len(ids) + 1)), "gapless, 1-based"
        assert store.stream_version(aggregate) == len(ids)
        in_log = [e.version for e in log if e.aggregate_id == aggregate]
        assert in_log == sorted(in_log), "a stream's versions follow commit order"
    for command_id, ids in model.commands.items():
        assert store.processed_command(command_id).event_ids == ids
    assert len({e.event_id for e in log}) == len(log)


@pytest.mark.parametrize("adapter", ADAPTERS, ids=str)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(program=st.lists(ops, min_size=1, max_size=25))
def test_random_appends_agree_with_the_model(adapter: Adapter, program: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = adapter.open(Path(tmp))
        try:
            _run(store, program)
        finally:
            store.close()
