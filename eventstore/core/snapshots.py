"""Snapshots and the strategies that decide when to take one.

Snapshots are versions, not replacements (DESIGN decision 8): each is kept
under (aggregate id, version), which is what lets ``load(id, at_version=N)``
start from the nearest one below N.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    aggregate_id: str
    aggregate_type: str
    version: int
    schema_key: str
    data: bytes
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SnapshotStats:
    count: int
    aggregates: int
    total_bytes: int

    @property
    def average_bytes(self) -> float:
        return self.total_bytes / self.count if self.count else 0.0


SnapshotStrategy = Callable[[int, int], bool]
"""``(version, events_since_snapshot) -> bool``: take a snapshot now?"""


class EveryNEvents:
    """Snapshot whenever ``n`` events have been stored since the last snapshot."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"EveryNEvents needs n >= 1, got {n}")
        self.n = n

    def __call__(self, version: int, events_since_snapshot: int) -> bool:
        return events_since_snapshot >= self.n

    def __repr__(self) -> str:
        return f"EveryNEvents({self.n})"


SnapshotUpcaster = Callable[[Snapshot], "Snapshot | None"]
"""Turns a snapshot of an older schema into the current one, or None to ignore it."""
