"""An aggregate's state as plain values, and what changed between two versions.

Hand-written aggregates usually keep their state in a proto message
(``self.state``); generated ones forward the state message's fields as
attributes. Both become a dict of field to value here, so ``%es_state`` and the
time-travel widget show any aggregate the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from ..core.aggregate import AggregateRoot
from .messages import message_to_dict

_NOT_STATE = {"aggregate_type", "schema_key"}


def aggregate_state(aggregate: AggregateRoot) -> dict[str, Any]:
    """The aggregate's state fields and values.

    Looks, in order, for a ``state_dict()`` method, a proto message in a
    ``state`` (or ``_state``) attribute, then the aggregate's own public
    attributes.
    """
    custom = getattr(aggregate, "state_dict", None)
    if callable(custom):
        return dict(custom())
    for name in ("state", "_state"):
        try:
            value = object.__getattribute__(aggregate, name)
        except AttributeError:
            continue
        if isinstance(value, Message):
            return message_to_dict(value)
    values: dict[str, Any] = {}
    for key, value in vars(aggregate).items():
        if key.startswith("_") or key in _NOT_STATE or callable(value):
            continue
        values[key] = message_to_dict(value) if isinstance(value, Message) else value
    return values


@dataclass(frozen=True, slots=True)
class Change:
    """One field that differs between two versions (``path`` is dotted, lists by index)."""

    path: str
    before: Any
    after: Any

    @property
    def kind(self) -> str:
        if self.before is _MISSING:
            return "added"
        if self.after is _MISSING:
            return "removed"
        return "changed"


class _Missing:
    def __repr__(self) -> str:
        return "—"


_MISSING: Any = _Missing()
MISSING = _MISSING
"""Stands for "no value" on one side of a Change (a field or list item that did not exist)."""


def diff_states(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """The fields that differ, nested dicts and lists walked so only the changed leaves show."""
    changes: list[Change] = []
    _diff(before, after, "", changes)
    return changes


def _diff(before: Any, after: Any, path: str, out: list[Change]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in list(dict.fromkeys([*before, *after])):
            sub = f"{path}.{key}" if path else str(key)
            _diff(before.get(key, _MISSING), after.get(key, _MISSING), sub, out)
        return
    if isinstance(before, list) and isinstance(after, list):
        for index in range(max(len(before), len(after))):
            _diff(
                before[index] if index < len(before) else _MISSING,
                after[index] if index < len(after) else _MISSING,
                f"{path}[{index}]",
                out,
            )
        return
    if before is _MISSING and after is _MISSING:
        return
    if before is _MISSING or after is _MISSING or before != after:
        out.append(Change(path, before, after))
