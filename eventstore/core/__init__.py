"""The pure core: events, aggregates, repository, snapshots, errors and ports.

No SQL, sockets or IPython here (DESIGN: core is pure).
"""

from .aggregate import AggregateRoot, PendingEvent
from .commands import CommandResult
from .constraints import ConstraintOp, UniqueConstraint
from .errors import (
    AggregateNotFoundError,
    AppError,
    ConcurrencyError,
    DuplicateEventIdError,
    EventDecodeError,
    EventStoreError,
    StoreClosedError,
    UniqueConstraintError,
    UniqueConstraintReleaseError,
    VersionNotFoundError,
)
from .event_types import EventTypeRegistry
from .events import Event, EventMetadata, NewEvent
from .follow import Subscription
from .ids import deterministic_event_id, new_command_id, new_event_id
from .ports import (
    DEFAULT_COMMAND_TTL,
    AppendResult,
    CheckpointStore,
    CommandStore,
    EventStore,
    ProcessedCommand,
    SnapshotStore,
)
from .projection import Projection, ProjectionContext
from .projections import (
    BatchOutcome,
    CheckpointedReadModel,
    DeadLetter,
    EventSource,
    FunctionProjection,
    MetricPoint,
    ProjectionFailure,
    ProjectionInfo,
    ProjectionManager,
    ProjectionStatus,
    ReadModel,
    RebuildProgress,
    UnknownProjectionError,
    projection,
)
from .repository import Repository
from .snapshots import EveryNEvents, Snapshot, SnapshotStats, SnapshotStrategy, SnapshotUpcaster
from .transport import (
    COMMAND_ID_HEADER,
    InProcessTransport,
    Middleware,
    RequestContext,
    Response,
    Route,
    Router,
    ServiceBinding,
    Transport,
    metadata_headers,
)
from .upcasting import EventUpcaster, Upcasters

__all__ = [
    "DuplicateEventIdError",
    "StoreClosedError",
    "COMMAND_ID_HEADER",
    "InProcessTransport",
    "Middleware",
    "RequestContext",
    "Response",
    "Route",
    "Router",
    "ServiceBinding",
    "Transport",
    "metadata_headers",
    "BatchOutcome",
    "CheckpointedReadModel",
    "DeadLetter",
    "EventSource",
    "FunctionProjection",
    "MetricPoint",
    "ProjectionFailure",
    "ProjectionInfo",
    "ProjectionManager",
    "ProjectionStatus",
    "ReadModel",
    "RebuildProgress",
    "UnknownProjectionError",
    "projection",
    "Subscription",
    "DEFAULT_COMMAND_TTL",
    "AggregateNotFoundError",
    "AggregateRoot",
    "AppError",
    "AppendResult",
    "CheckpointStore",
    "CommandResult",
    "CommandStore",
    "ConcurrencyError",
    "ConstraintOp",
    "Event",
    "EventDecodeError",
    "EventMetadata",
    "EventStore",
    "EventStoreError",
    "EventTypeRegistry",
    "EventUpcaster",
    "EveryNEvents",
    "NewEvent",
    "PendingEvent",
    "ProcessedCommand",
    "Projection",
    "ProjectionContext",
    "Repository",
    "Snapshot",
    "SnapshotStats",
    "SnapshotStore",
    "SnapshotStrategy",
    "SnapshotUpcaster",
    "UniqueConstraint",
    "UniqueConstraintError",
    "UniqueConstraintReleaseError",
    "Upcasters",
    "VersionNotFoundError",
    "deterministic_event_id",
    "new_command_id",
    "new_event_id",
]
