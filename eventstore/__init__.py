"""eventstore: event sourcing and CQRS with a domain model written in Protocol Buffers.

The names a user types come from here. Adapters are imported from their
subpackages (``eventstore.sqlite``) or lazily through this module.
"""

from typing import TYPE_CHECKING, Any

from .core import *  # noqa: F403
from .core import __all__ as _core_all
from .stores import open_store

if TYPE_CHECKING:
    from .codegen import CodegenError, ModelError, ProtoCompileError, generate_module
    from .sqlite import SQLiteEventStore, SQLiteReadModel

__version__ = "0.1.0"

_LAZY = {
    "SQLiteEventStore": "sqlite",
    "SQLiteReadModel": "sqlite",
    "generate_module": "codegen",
    "CodegenError": "codegen",
    "ModelError": "codegen",
    "ProtoCompileError": "codegen",
}

__all__ = [
    *_core_all,
    "CodegenError",
    "ModelError",
    "ProtoCompileError",
    "SQLiteEventStore",
    "SQLiteReadModel",
    "__version__",
    "generate_module",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # Adapters load on first use so that `import eventstore` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
