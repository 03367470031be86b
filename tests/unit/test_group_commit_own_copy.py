"""Each member of a failed group gets its own exception, with every field of the original."""

from __future__ import annotations

import sqlite3

import pytest

from eventstore.core.errors import StorageFullError, StoreClosedError
from eventstore.sqlite import StoreBusyError
from eventstore.sqlite.group_commit import own_copy


def _sqlite_error() -> sqlite3.Error:
    try:
        sqlite3.connect(":memory:").execute("SELEC 1")
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("unreachable")


FIELDS = ("sqlite_errorcode", "errno", "strerror", "filename", "path", "busy_timeout")
FIELDS += ("encoding", "start", "reason", "store")


@pytest.mark.parametrize(
    "error",
    [
        _sqlite_error(),
        OSError(28, "No space left on device", "/data/store.db"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        StoreBusyError("/x.db", 5.0, "database is locked"),
        StorageFullError("/x.db"),
        StoreClosedError("/x.db"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_copy_has_the_class_message_and_fields_and_is_chained(error: BaseException) -> None:
    # Built-in exceptions lost fields set by their own __init__ (OSError's filename,
    # UnicodeDecodeError's encoding), so the copy's message was not the original's.
    made = own_copy(error)
    assert made is not error and type(made) is type(error) and made.__cause__ is error
    assert str(made) == str(error)
    assert {f: getattr(made, f, None) for f in FIELDS} == {
        f: getattr(error, f, None) for f in FIELDS
    }
