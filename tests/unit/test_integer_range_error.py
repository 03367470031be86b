"""IntegerRangeError says on which side of the 64-bit integers a value is."""

from __future__ import annotations

from eventstore import IntegerRangeError


def test_a_value_below_the_integers_is_said_to_be_below_them_not_above():
    below = str(IntegerRangeError("s.db", "version", -(2**64)))
    assert "2**63 or more" not in below
    assert f"version={-(2**64)} is below -2**63" in below
    assert f"version={2**64} is 2**63 or more" in str(IntegerRangeError("s.db", "version", 2**64))


def test_an_unknown_value_is_said_to_be_beyond_the_integers_either_side():
    error = IntegerRangeError("s.db")
    assert "2**63 or more" not in str(error)
    assert "beyond the 64-bit integers SQLite holds (-2**63 to 2**63 - 1)" in str(error)
