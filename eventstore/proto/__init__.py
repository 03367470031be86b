"""Proto files shipped with eventstore, and their compiled Python modules.

``eventsourcing/options.proto`` keeps the path of the Go original so that
protos written for it compile unchanged, but its Python module lives here,
inside ``eventstore`` (DESIGN decision 12: the top-level name
``eventsourcing`` belongs to another library).
"""

from pathlib import Path

#: The include path under which ``eventsourcing/options.proto`` is found.
INCLUDE_DIR = Path(__file__).parent
