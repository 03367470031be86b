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

    @classmethod
    def release(cls, index: str, value: str) -> UniqueConstraint:
        return cls(index, value, ConstraintOp.RELEASE)

    def to_json(self) -> list[str]:
        return [self.index, self.value, self.op.value]

    @classmethod
    def from_json(cls, raw: list[str]) -> UniqueConstraint:
        return cls(raw[0], raw[1], ConstraintOp(raw[2]))
