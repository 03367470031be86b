"""The embedded SQLite adapter: event store, snapshots, checkpoints and commands in one file."""

from .checkpoints import read_checkpoint, write_checkpoint
from .connections import ConnectionSettings, StoreClosedError
from .store import SQLiteEventStore

__all__ = [
    "ConnectionSettings",
    "SQLiteEventStore",
    "StoreClosedError",
    "read_checkpoint",
    "write_checkpoint",
]
