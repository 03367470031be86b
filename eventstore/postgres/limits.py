"""Values PostgreSQL cannot store that SQLite can, refused at the call with a clear error.

- **NUL bytes in text.** PostgreSQL's ``text`` cannot hold the character
  ``'\\x00'`` (psycopg refuses it with a bare ``DataError``); SQLite stores it.
  Every id or name that goes into a ``text`` column (aggregate id and type,
  event id and type, command id, unique-constraint index and value,
  checkpoint and projection name, snapshot schema key, ...) is checked before
  anything is sent: ``NulByteError``, naming the field. Reads check too: such
  a value can never be stored here, so a lookup of one is a mistake, said at
  the call. Event data (``bytea``) and metadata (JSON, which escapes it as
  ``\\u0000``) hold NUL bytes fine.
- **Long unique-constraint values.** A claimed ``(index, value)`` is a row of
  a btree index, and a btree row holds at most 2,704 bytes with PostgreSQL's
  default 8 KB pages (a third of a page; the server says "index row size ...
  exceeds btree version 4 maximum 2704", SQLSTATE 54000, for a value it
  cannot compress below that). ``MAX_CONSTRAINT_BYTES`` bounds the index name
  and value together, in UTF-8, before anything is written:
  ``ConstraintValueTooLargeError``. The bound does not depend on how well a
  value compresses (the server accepts a long value it can compress, and
  refuses a shorter one it cannot). Releases are not bounded (a value claimed
  before this check, compressed, can still be released).
- **Any other value over a server limit** (an event or aggregate id of
  thousands of bytes, in its btree index, say): the server's refusal,
  SQLSTATE 54000, becomes ``ValueTooLargeError`` (``limit_exceeded``), never
  the "send it again" that a lost connection gets: sending it again fails the
  same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..core.arguments import check_lookup_id
from ..core.constraints import ConstraintOp
from ..core.errors import StorageError
from ..core.events import NewEvent

#: The most bytes (UTF-8) of a unique constraint's index name and value together.
#: A btree row on an 8 KB page holds 2,704 bytes; the row's own header, the two
#: values' length headers and their alignment take at most 19 more than the
#: text, so 2,685 always fit (measured on the embedded PostgreSQL 18: 2,685 bytes
#: fit with index names of 1, 126, 127, 200 and 201 bytes; a 1-byte name and a
#: 2,689-byte value did not). 2,600 is that, rounded down, with room to spare.
MAX_CONSTRAINT_BYTES = 2_600
#: A btree row's most bytes on PostgreSQL's default 8 KB page (BTMaxItemSize).
BTREE_ROW_LIMIT = 2_704


class PostgresValueError(StorageError, ValueError):
    """A value the PostgreSQL store cannot hold as given; nothing was written.

    ``field`` names the argument (``aggregate_id``, ``events[2].event_id``,
    ``unique constraint 'email' value``, ...); ``where`` the call.
    """

    def __init__(self, path: str, where: str, field: str, cause: str, fix: str) -> None:
        self.where = where
        self.field = field
        super().__init__(path, f"{where}: {cause}", fix)


class NulByteError(PostgresValueError):
    """A NUL byte (``'\\x00'``) in a value stored as PostgreSQL text."""

    def __init__(self, path: str, where: str, field: str, value: str) -> None:
        self.value = value
        super().__init__(
            path,
            where,
            field,
            f"{field} {value[:80]!r} holds a NUL byte ('\\x00') at index "
            f"{value.index(chr(0))}, and PostgreSQL text cannot hold NUL bytes, so nothing "
            "was sent to the server",
            f"Remove the NUL byte from {field} (ids and names are text; put binary data in "
            "the event's data, or encode it, e.g. as hex). SQLite stores it, PostgreSQL "
            "cannot.",
        )


class ValueTooLargeError(PostgresValueError):
    """A value over one of PostgreSQL's limits, most often a btree index row's (an id or
    unique-constraint value of thousands of bytes): sending it again cannot help.

    ``size`` and ``limit`` are in bytes (``size`` 0 when only the server measured it:
    its words are in ``detail``).
    """

    def __init__(
        self,
        path: str,
        where: str,
        field: str,
        size: int,
        limit: int,
        detail: str = "",
        counted: str = "it is",
    ) -> None:
        self.size = size
        self.limit = limit
        self.detail = detail
        measured = (
            f"{counted} {size:,} bytes in UTF-8, over the {limit:,} bytes this store takes"
            if size
            else f"the server refused it ({detail})"
        )
        super().__init__(
            path,
            where,
            field,
            f"{field} is too long for PostgreSQL's btree index, whose rows hold at most "
            f"{BTREE_ROW_LIMIT:,} bytes (a third of an 8 KB page): {measured}; nothing was "
            "written, and sending it again fails the same way",
            "Use a shorter value; for a long unique-constraint value, claim its hash, which "
            "is as unique (hashlib.sha256(value.encode()).hexdigest(), 64 characters).",
        )


class ConstraintValueTooLargeError(ValueTooLargeError):
    """A claimed unique-constraint value whose index name and value together exceed
    ``MAX_CONSTRAINT_BYTES``."""

    def __init__(self, path: str, where: str, index: str, size: int, limit: int) -> None:
        self.index = index
        super().__init__(
            path,
            where,
            f"the value claimed in unique constraint {index!r}",
            size,
            limit,
            counted="with its index name it is",
        )


#: The names of the store's btree indexes, as the values they hold (for the server's error).
_INDEXED = {
    "unique_constraints_pkey": "a unique constraint's index name and value",
    "events_event_id_key": "an event id",
    "events_aggregate_id_version_key": "the aggregate id",
    "processed_commands_pkey": "the command id",
    "snapshots_pkey": "the snapshot's aggregate id",
    "snapshots_by_type": "the snapshot's aggregate type",
    "projection_checkpoints_pkey": "the checkpoint name",
    "projection_dead_letters_pkey": "the projection name",
}


def limit_exceeded(path: str, where: str, exc: Exception) -> PostgresValueError:
    """The error for the server's ``program_limit_exceeded`` (SQLSTATE 54000): a value
    over a limit, which no retry gets past (psycopg files it under ``OperationalError``,
    which the store otherwise answers with "check the server and send it again")."""
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc)).strip()
    index = re.search(r'for index "([^"]+)"', message)
    field = (_INDEXED.get(index.group(1)) if index else None) or (
        "a value (an id, a name or a unique-constraint value)"
    )
    maximum = re.search(r"maximum (?:size is )?(\d+)", message)
    return ValueTooLargeError(
        path, where, field, 0, int(maximum.group(1)) if maximum else 0, message
    )


def check_text(path: str, where: str, field: str, value: object) -> None:
    """Refuse a str holding a NUL byte (anything else passes: types are checked elsewhere)."""
    if isinstance(value, str) and "\x00" in value:
        raise NulByteError(path, where, field, value)


def check_texts(path: str, where: str, named: Iterable[tuple[str, object]]) -> None:
    for field, value in named:
        check_text(path, where, field, value)


def check_lookup(path: str, where: str, *named: tuple[str, object]) -> None:
    """Ids and names a read looks up: each a ``str`` storable as UTF-8
    (``core.arguments.check_lookup_id``, the check SQLite's store makes: PostgreSQL would
    refuse to compare text with an int) and without a NUL byte."""
    for field, value in named:
        if type(value) is not str or not value.isascii():  # the usual case tested inline
            check_lookup_id(where, field, value)
        check_text(path, where, field, value)


def check_events(
    path: str,
    where: str,
    aggregate_id: str,
    aggregate_type: str,
    events: Sequence[NewEvent],
    prefix: str = "",
) -> None:
    """An append's text values (ids, types, constraints) and the size of its claims."""
    check_text(path, where, f"{prefix}aggregate_id", aggregate_id)
    check_text(path, where, f"{prefix}aggregate_type", aggregate_type)
    for n, event in enumerate(events):
        check_text(path, where, f"{prefix}events[{n}].event_id", event.event_id)
        check_text(path, where, f"{prefix}events[{n}].event_type", event.event_type)
        for c in event.constraints:
            check_text(path, where, f"{prefix}events[{n}] unique constraint index", c.index)
            check_text(path, where, f"unique constraint {c.index!r} value", c.value)
            if c.op is ConstraintOp.CLAIM:
                size = len(c.index.encode(errors="surrogatepass")) + len(
                    c.value.encode(errors="surrogatepass")
                )
                if size > MAX_CONSTRAINT_BYTES:
                    raise ConstraintValueTooLargeError(
                        path, where, c.index, size, MAX_CONSTRAINT_BYTES
                    )
