"""The PostgreSQL adapter: one event log for several application servers (psycopg 3).

Install with ``pip install 'eventstore[postgres]'``. ``EmbeddedPostgres`` starts
a development server; ``PostgresEventStore(dsn)`` or
``eventstore.open_store("postgresql://...")`` opens a store on any server.
"""

from .embedded import EmbeddedPostgres, EmbeddedPostgresError
from .process_runner import ProcessRunner
from .read_model import PostgresReadModel, PostgresStoreInTransaction
from .store import PostgresEventStore

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "PostgresEventStore",
    "PostgresReadModel",
    "PostgresStoreInTransaction",
    "ProcessRunner",
]
