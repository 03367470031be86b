"""eventstore: event sourcing and CQRS with a domain model written in Protocol Buffers.

The names a user types come from here. Adapters are imported from their
subpackages (``eventstore.sqlite``) or lazily through this module.
"""

from typing import TYPE_CHECKING, Any

from .core import *  # noqa: F403
from .core import __all__ as _core_all

if TYPE_CHECKING:
    from .sqlite import SQLiteEventStore

__version__ = "0.1.0"

__all__ = [*_core_all, "SQLiteEventStore", "__version__"]


def __getattr__(name: str) -> Any:
    # Adapters load on first use so that `import eventstore` stays light.
    if name == "SQLiteEventStore":
        from .sqlite import SQLiteEventStore

        return SQLiteEventStore
    raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
