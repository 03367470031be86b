"""ipywidgets for the notebook: command form (and its field editors), event log, time travel,
projection monitor, and ChartView (an altair chart as a live widget)."""

from .chart_view import ChartView, use_interactive_renderer
from .editors import FormValueError
from .event_log import EventLog
from .forms import CommandForm
from .projection_monitor import ProjectionMonitor
from .time_travel import TimeTravel, VersionView

__all__ = [
    "ChartView",
    "CommandForm",
    "EventLog",
    "FormValueError",
    "ProjectionMonitor",
    "TimeTravel",
    "VersionView",
    "use_interactive_renderer",
]
