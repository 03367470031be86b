"""The result of saving an aggregate under a command id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .events import Event


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
