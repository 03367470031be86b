"""Checks of the arguments of the public entry points (repository, aggregate, store).

A wrong type or value fails at the call, naming the argument and what it
accepts, instead of surfacing deep inside as an ``AttributeError`` or a
misleading answer ("versions run from 1 to 1" for ``at_version=1.5``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .events import EventMetadata, NewEvent


def _shown(value: object) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def check_command_id(where: str, command_id: object, *, optional: bool = False) -> None:
    """``command_id`` must be a non-empty ``str`` (or None when ``optional``)."""
    if command_id is None and optional:
        return
    if not isinstance(command_id, str):
        accepts = "a non-empty str or None" if optional else "a non-empty str"
        raise TypeError(
            f"{where}: command_id must be {accepts}, got {_shown(command_id)}. Pass the id "
            "the client sent (new_command_id() makes one)."
        )
    if not command_id:
        way_out = ", or leave command_id out to save without one" if optional else ""
        raise ValueError(
            f"{where} needs a non-empty command id, got ''. Pass the id the client sent "
            f"(new_command_id() makes one){way_out}."
        )


def check_metadata(where: str, metadata: object, name: str = "metadata") -> None:
    """``metadata`` must be an ``EventMetadata`` or None."""
    if metadata is not None and not isinstance(metadata, EventMetadata):
        raise TypeError(
            f"{where}: {name} must be an EventMetadata or None, got {_shown(metadata)}. Build "
            "one with EventMetadata(correlation_id=..., principal_id=..., custom={...})."
        )


def check_append(
    aggregate_id: object, expected_version: object, events: object, command_id: object
) -> None:
    """The arguments of ``EventStore.append``, checked before any SQL runs."""
    if not isinstance(aggregate_id, str) or not aggregate_id:
        raise TypeError(f"append: aggregate_id must be a non-empty str, got {_shown(aggregate_id)}")
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError(
            f"append to {aggregate_id!r}: expected_version must be an int (0 for a new "
            f"aggregate), got {_shown(expected_version)}"
        )
    check_command_id(f"append to {aggregate_id!r}", command_id, optional=True)
    if not isinstance(events, Sequence):
        raise TypeError(
            f"append to {aggregate_id!r}: events must be a sequence of NewEvent, got "
            f"{_shown(events)}"
        )
    for index, event in enumerate(events):
        if not isinstance(event, NewEvent):
            raise TypeError(
                f"append to {aggregate_id!r}: events[{index}] must be a NewEvent, got "
                f"{_shown(event)}"
            )
        check_metadata(f"append to {aggregate_id!r}", event.metadata, f"events[{index}].metadata")
