"""The projection runner: feeds projections from any event log, with checkpoints.

``ProjectionManager`` registers projections (the ``Projection`` port:
plain classes, ``@projection`` functions, generated builders) and feeds each
from its checkpoint; ``ReadModel`` is where results and checkpoints live.
"""

from ..ports import EventSource
from .functions import FunctionProjection, projection
from .manager import (
    CheckpointAheadOfLogError,
    ProjectionManager,
    ProjectionNotRebuildableError,
    UnknownProjectionError,
)
from .port import Projection, ProjectionContext
from .read_models import (
    BatchOutcome,
    CheckpointedReadModel,
    HandlerEndedTransactionError,
    ReadModel,
    ReadModelClosedError,
    StoreWriteInBatchError,
)
from .status import (
    DeadLetter,
    MetricPoint,
    ProjectionFailure,
    ProjectionInfo,
    ProjectionStatus,
    RebuildProgress,
)

__all__ = [
    "BatchOutcome",
    "CheckpointAheadOfLogError",
    "CheckpointedReadModel",
    "DeadLetter",
    "EventSource",
    "FunctionProjection",
    "HandlerEndedTransactionError",
    "MetricPoint",
    "Projection",
    "ProjectionContext",
    "ProjectionFailure",
    "ProjectionInfo",
    "ProjectionManager",
    "ProjectionNotRebuildableError",
    "ProjectionStatus",
    "ReadModel",
    "ReadModelClosedError",
    "RebuildProgress",
    "StoreWriteInBatchError",
    "UnknownProjectionError",
    "projection",
]
