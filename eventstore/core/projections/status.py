"""What the projection runner reports: status, failures, progress and metric points.

These are plain values, so a notebook widget, a CLI table or an OpenTelemetry
exporter can read them without knowing how the runner works.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from ..events import Event


class ProjectionStatus(StrEnum):
    """Where a projection stands.

    ``READY``: caught up with the head it last saw. ``CATCHING_UP``: behind
    and being fed (or waiting to be). ``REBUILDING``: reset and replaying from
    the start. ``FAILED``: a handler raised; it stays stopped at that event
    until ``resume``. ``PAUSED``: stopped on request until ``resume``.
    """

    READY = "READY"
    CATCHING_UP = "CATCHING_UP"
    REBUILDING = "REBUILDING"
    FAILED = "FAILED"
    PAUSED = "PAUSED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ProjectionFailure:
    """A handler that raised on one event: the facts needed to find and fix it.

    Also the record of a dead letter (an event set aside under the dead-letter policy).
    """

    projection: str
    position: int
    event_id: str
    event_type: str
    aggregate_id: str
    error_type: str
    message: str
    traceback: str = ""
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, projection: str, event: Event, exc: BaseException) -> ProjectionFailure:
        return cls(
            projection=projection,
            position=event.position,
            event_id=event.event_id,
            event_type=event.event_type,
            aggregate_id=event.aggregate_id,
            error_type=type(exc).__name__,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            error=exc,
        )

    def describe(self) -> str:
        if not self.event_id:  # not a handler's failure: a reset, or the runner's own check
            return f"projection {self.projection!r}: {self.error_type}: {self.message}"
        return (
            f"projection {self.projection!r} failed at position {self.position} "
            f"(event {self.event_type} {self.event_id!r} of aggregate {self.aggregate_id!r}): "
            f"{self.error_type}: {self.message}. Its checkpoint stays at the event before; fix "
            f"the handler and call resume({self.projection!r}) to retry this event, or register "
            "the projection with dead_letter=True to set failing events aside."
        )

    def __str__(self) -> str:
        return self.describe()


DeadLetter = ProjectionFailure
"""An event set aside because its handler raised (the opt-in dead-letter policy)."""


@dataclass(frozen=True)
class ProjectionInfo:
    """One projection's state at the moment it was asked for.

    ``lag_positions`` counts positions between the head of the log and the
    last position this projection has accounted for; ``lag_seconds`` is the
    commit time of the head minus that of the last handled event.
    """

    name: str
    status: ProjectionStatus
    checkpoint: int
    head_position: int
    lag_positions: int
    lag_seconds: float
    events_handled: int
    errors: int
    dead_lettered: int
    last_error: ProjectionFailure | None = None
    unhandled: dict[str, int] = field(default_factory=dict)
    """Events fed to it that it had no handler for (or that upcast into a type it does not
    take), by event type: skipped, never silently."""

    @property
    def is_ready(self) -> bool:
        return self.status is ProjectionStatus.READY


@dataclass(frozen=True)
class RebuildProgress:
    """Handed to a rebuild's progress callback after each batch (notebook widgets use it)."""

    name: str
    position: int
    head_position: int
    events_handled: int
    elapsed_seconds: float

    @property
    def fraction(self) -> float:
        return 1.0 if self.head_position <= 0 else min(1.0, self.position / self.head_position)

    @property
    def events_per_second(self) -> float:
        return self.events_handled / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


@dataclass(frozen=True)
class MetricPoint:
    """One metric reading, shaped for an OpenTelemetry counter or gauge.

    ``kind`` is ``"counter"`` (monotonic total) or ``"gauge"``; ``attributes``
    names the projection.
    """

    name: str
    value: float
    kind: str
    unit: str
    attributes: dict[str, str]


METRIC_EVENTS_HANDLED = "eventsourcing.projection.events_handled"
METRIC_ERRORS = "eventsourcing.projection.errors"
METRIC_DEAD_LETTERED = "eventsourcing.projection.dead_lettered"
METRIC_LAG = "eventsourcing.projection.lag"
METRIC_LAG_SECONDS = "eventsourcing.projection.lag_seconds"


def metric_points(info: ProjectionInfo) -> list[MetricPoint]:
    attrs = {"projection": info.name}
    return [
        MetricPoint(METRIC_EVENTS_HANDLED, info.events_handled, "counter", "{event}", attrs),
        MetricPoint(METRIC_ERRORS, info.errors, "counter", "{error}", attrs),
        MetricPoint(METRIC_DEAD_LETTERED, info.dead_lettered, "counter", "{event}", attrs),
        MetricPoint(METRIC_LAG, info.lag_positions, "gauge", "{position}", attrs),
        MetricPoint(METRIC_LAG_SECONDS, info.lag_seconds, "gauge", "s", attrs),
    ]
