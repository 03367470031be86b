"""ipywidgets for the notebook: command form (and its field editors), event log, time travel,
projection monitor."""

from .editors import FormValueError
from .event_log import EventLog
from .forms import CommandForm
from .projection_monitor import ProjectionMonitor
from .time_travel import TimeTravel, VersionView

__all__ = [
    "CommandForm",
    "EventLog",
    "FormValueError",
    "ProjectionMonitor",
    "TimeTravel",
    "VersionView",
]
