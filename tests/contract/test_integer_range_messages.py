"""``IntegerRangeError`` from a store's own argument checks names no adapter: both hold
64-bit integers, and a PostgreSQL store's error must not speak of SQLite's."""

from __future__ import annotations

import pytest

from eventstore import IntegerRangeError, Snapshot

from .builders import deposit

MAX = 2**63 - 1


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.append("acc-1", "Account", MAX, [deposit()]),
        lambda s: s.save_checkpoint("cp", MAX + 1),
        lambda s: s.save_snapshot(Snapshot("acc-1", "Account", MAX + 1, "k", b"")),
        lambda s: s.load_stream("acc-1", MAX + 1),
        lambda s: s.read_all(MAX + 1),
    ],
)
def test_an_integer_beyond_the_store_is_named_without_an_adapter(store, call):
    with pytest.raises(IntegerRangeError) as caught:
        call(store)
    message = str(caught.value)
    assert "SQLite" not in message and "PostgreSQL" not in message
    assert "2**63 or more, beyond the largest 64-bit integer the store holds" in message
    assert caught.value.value is not None and caught.value.name in message
