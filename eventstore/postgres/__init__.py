"""The PostgreSQL adapter: one event log for several application servers (psycopg 3).

Install with ``pip install 'eventstore[postgres]'``. ``EmbeddedPostgres`` starts
a development server; ``PostgresEventStore(dsn)`` or
``eventstore.open_store("postgresql://...")`` opens a store on any server.
Values PostgreSQL cannot store (a NUL byte in an id, a unique-constraint value
too long for its index) are refused at the call: see ``limits``.
"""

from .embedded import EmbeddedPostgres, EmbeddedPostgresError
from .limits import (
    ConstraintValueTooLargeError,
    NulByteError,
    PostgresValueError,
    ValueTooLargeError,
)
from .process_runner import ProcessRunner
from .read_model import PostgresReadModel, PostgresStoreInTransaction
from .store import AppendInterruptedError, PostgresEventStore

__all__ = [
    "AppendInterruptedError",
    "ConstraintValueTooLargeError",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "NulByteError",
    "PostgresEventStore",
    "PostgresReadModel",
    "PostgresStoreInTransaction",
    "PostgresValueError",
    "ProcessRunner",
    "ValueTooLargeError",
]
