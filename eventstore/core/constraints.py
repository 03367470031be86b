"""Unique constraints attached to events (claim a value, release it)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


class ConstraintOp(enum.Enum):
    CLAIM = "claim"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class UniqueConstraint:
    """A claim (or release) of ``value`` in the unique index ``index``.

    Checked and applied by the store in the same transaction as the event
    that carries it, so a claim either holds together with its event or not
    at all.
    """

    index: str
    value: str
    op: ConstraintOp = ConstraintOp.CLAIM

    def __post_init__(self) -> None:
        if not isinstance(self.index, str) or not self.index:
            raise ValueError(
                f"UniqueConstraint needs a non-empty index name (a string), got {self.index!r}"
            )
        if not isinstance(self.value, str) or not self.value:
            raise ValueError(
                f"UniqueConstraint {self.index!r} needs a non-empty string value, got "
                f"{self.value!r}; convert numbers and normalise case before claiming"
            )
        _check_encodable("an index name", self.index, self.index)
        _check_encodable("a value", self.value, self.index)
        if not isinstance(self.op, ConstraintOp):
            raise TypeError(
                f"UniqueConstraint {self.index!r} op must be ConstraintOp.CLAIM or "
                f"ConstraintOp.RELEASE, got {self.op!r} (or use UniqueConstraint.release(...))"
            )

    @classmethod
    def release(cls, index: str, value: str) -> UniqueConstraint:
        return cls(index, value, ConstraintOp.RELEASE)

    def to_json(self) -> list[str]:
        return [self.index, self.value, self.op.value]

    @classmethod
    def from_json(cls, raw: list[str]) -> UniqueConstraint:
        return cls(raw[0], raw[1], ConstraintOp(raw[2]))


def _check_encodable(what: str, text: str, index: str) -> None:
    """Refuse a string the stores cannot keep: one with a lone surrogate is not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"UniqueConstraint {index!r} has {what} that is not valid Unicode text: "
            f"{text!r} holds a lone surrogate (U+{ord(text[exc.start]):04X}) at index "
            f"{exc.start}, which cannot be stored as UTF-8. Such strings come from decoding "
            "bytes with errors='surrogateescape' or from half of a UTF-16 pair: decode the "
            "bytes as UTF-8 (errors='strict' or 'replace') before claiming"
        ) from None


class ConstraintTable(Protocol):
    """One store's statements on its table of claimed values, inside the append's
    transaction: each adapter writes these three, the rule below is the same for all."""

    def owner(self, index: str, value: str) -> str | None: ...

    def claim(self, index: str, value: str, aggregate_id: str) -> None: ...

    def release(self, index: str, value: str) -> None: ...


class _HasConstraints(Protocol):
    @property
    def constraints(self) -> tuple[UniqueConstraint, ...]: ...


def apply_constraints(
    table: ConstraintTable,
    aggregate_id: str,
    events: Iterable[_HasConstraints],
    released_later: Mapping[tuple[str, str], str] | None = None,
) -> list[tuple[str, str]]:
    """Claim and release ``events``' values for ``aggregate_id``, in their order.

    A claim of a value another aggregate owns raises ``UniqueConstraintError``, a
    release of a value it does not own ``UniqueConstraintReleaseError``. In a unit, a
    claim of a value whose owner is named in ``released_later`` (a later member
    releases it) is not refused but returned, to be claimed at the unit's end.
    """
    from .errors import UniqueConstraintError, UniqueConstraintReleaseError

    waiting: list[tuple[str, str]] = []
    for event in events:
        for c in event.constraints:
            owner = table.owner(c.index, c.value)
            if c.op is ConstraintOp.RELEASE:
                if owner != aggregate_id:
                    raise UniqueConstraintReleaseError(c.index, c.value, owner, aggregate_id)
                table.release(c.index, c.value)
            elif owner is None:
                table.claim(c.index, c.value, aggregate_id)
            elif owner == aggregate_id:
                continue
            elif released_later is not None and released_later.get((c.index, c.value)) == owner:
                waiting.append((c.index, c.value))
            else:
                raise UniqueConstraintError(c.index, c.value, owner, aggregate_id)
    return waiting
