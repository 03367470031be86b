"""Where the projection port used to live; it is in ``core/projections/port.py`` now.

Kept because ``eventstore.codegen.runtime`` and ``eventstore.sqlite.read_model``
import from here; new code imports from ``eventstore.core.projections``.
"""

from .projections.port import Projection, ProjectionContext

__all__ = ["Projection", "ProjectionContext"]
