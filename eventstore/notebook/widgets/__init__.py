"""ipywidgets for the notebook: command form, event log, time travel, projection monitor."""

from .event_log import EventLog
from .forms import CommandForm, FormValueError
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
