"""Unique constraints attached to events (claim a value, release it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
