"""The embedded SQLite adapter: event store, snapshots, checkpoints and commands in one file."""

from ..core.errors import StoreBusyError
from .checkpoints import read_checkpoint, write_checkpoint
from .connections import ConnectionSettings, StoreClosedError
from .process_runner import ProcessRunner
from .read_model import SQLiteReadModel
from .store import SQLiteEventStore

__all__ = [
    "ConnectionSettings",
    "ProcessRunner",
    "SQLiteEventStore",
    "SQLiteReadModel",
    "StoreBusyError",
    "StoreClosedError",
    "read_checkpoint",
    "write_checkpoint",
]
