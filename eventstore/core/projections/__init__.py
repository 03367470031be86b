"""The projection runner: feeds projections from any event source, with checkpoints.

``ProjectionManager`` registers projections (the ``Projection`` port:
plain classes, ``@projection`` functions, generated builders) and feeds each
from its checkpoint; ``ReadModel`` is where results and checkpoints live.
"""

from .functions import FunctionProjection, projection
from .manager import EventSource, ProjectionManager, UnknownProjectionError
from .read_models import BatchOutcome, CheckpointedReadModel, ReadModel
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
]
