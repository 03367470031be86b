"""The result of saving an aggregate under a command id, and the rule for a command record."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import CommandIdConflictError
from .events import Event, timestamp_from_micros
from .ports import AppendResult
from .units import unit_event_ids

log = logging.getLogger("eventstore.commands")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command stored.

    ``already_processed`` is True when the command id was seen before: then
    ``events`` are the events the first run stored and nothing new was written.
    """

    command_id: str
    events: tuple[Event, ...]
    already_processed: bool = False
    processed_at: datetime | None = None

    @property
    def version(self) -> int:
        """The aggregate version after this command (0 when it stored nothing)."""
        return self.events[-1].version if self.events else 0


def result_of_command_record(
    record: Sequence[Any] | None,
    command_id: str,
    aggregate_id: str,
    now: int,
    events_by_id: Callable[[Sequence[str]], tuple[Event, ...]],
    find_by_event_ids: Callable[[], AppendResult | None],
    store_name: str,
) -> AppendResult | None:
    """The command-id rule every store applies to a command record (docs/decisions.md, 4).

    ``record`` is (event ids JSON, processed_at µs, expires_at µs, aggregate id, unit JSON)
    or None. An expired or missing record is no answer (None). On its own aggregate,
    the record's events are the original result. On another aggregate: a member of the
    same unit gets its own part; an aggregate whose earlier run of this id outlived the
    record is recognised by its deterministic event ids (``find_by_event_ids``);
    anything else is a new command under a known id, refused with
    ``CommandIdConflictError`` (the other aggregate goes to the log only: it may be
    another tenant's). The adapters supply the two lookups on their own connection.
    """
    if record is None or record[2] is None or record[2] <= now:
        return None
    processed_at = timestamp_from_micros(record[1])
    if record[3] != aggregate_id:
        in_unit = unit_event_ids(record[4], aggregate_id)
        if in_unit is not None:
            return AppendResult(events_by_id(in_unit), True, processed_at)
        own = find_by_event_ids()
        if own is not None:
            return own
        log.warning(
            "refused command id %r for aggregate %r of %r: it is recorded for aggregate %r",
            command_id,
            aggregate_id,
            store_name,
            record[3],
        )
        raise CommandIdConflictError(command_id, aggregate_id)
    return AppendResult(events_by_id(json.loads(record[0])), True, processed_at)
