"""Schema names: SQL keywords (``user``, ``order``) work, quoted wherever the store uses
them; names starting with ``pg_`` (PostgreSQL's own) are refused before anything is made,
and a tenant id that would make one gets a schema PostgreSQL takes."""

from __future__ import annotations

import time

import psycopg
import pytest

import eventstore
from eventstore import NewEvent, StoreURLError, new_event_id
from eventstore.postgres import PostgresEventStore
from eventstore.tenancy import TenantStores, schema_name
from tests.support import postgres


def _event() -> NewEvent:
    return NewEvent(new_event_id(), "test.Deposited", b"x")


def _drop(*schemas: str) -> None:
    with psycopg.connect(postgres.server_dsn(), autocommit=True) as admin:
        for schema in schemas:
            admin.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )


def _schemas_like(pattern: str) -> list[str]:
    with psycopg.connect(postgres.server_dsn(), autocommit=True) as admin:
        return [
            row[0]
            for row in admin.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (pattern,)
            )
        ]


@pytest.mark.parametrize("keyword", ["user", "order", "select"])
def test_a_schema_named_by_an_sql_keyword_holds_a_working_store(keyword):
    try:
        with PostgresEventStore(postgres.server_dsn(), schema=keyword, pool_size=2) as store:
            store.append("acc-1", "Account", 0, [_event()])
            assert [e.aggregate_id for e in store.read_all()] == ["acc-1"]
            heard: list[int] = []
            store.add_commit_listener(heard.append)
            # Another store object (another process, say): its commits reach this one's
            # listener by NOTIFY on the schema's channel.
            with PostgresEventStore(postgres.server_dsn(), schema=keyword) as other:
                assert other.stream_version("acc-1") == 1
                version = 1
                deadline = time.monotonic() + 10
                while not heard and time.monotonic() < deadline:  # until LISTEN is up
                    other.append("acc-1", "Account", version, [_event()])
                    version += 1
                    time.sleep(0.3)
                assert heard and store.stream_version("acc-1") == version
    finally:
        _drop(keyword)


@pytest.mark.parametrize("name", ["pg_orders", "pg_"])
def test_a_schema_name_starting_with_pg_is_refused_before_anything_is_made(name):
    url = f"{postgres.server_dsn()}?schema={name}"
    with pytest.raises(StoreURLError, match=f"schema '{name}' starts with 'pg_'") as caught:
        eventstore.open_store(url)
    assert "PostgreSQL keeps for its own schemas" in str(caught.value)
    assert "Give another schema name" in str(caught.value)
    with pytest.raises(StoreURLError, match="starts with 'pg_'"):
        PostgresEventStore(postgres.server_dsn(), schema=name)
    assert _schemas_like(name) == []


def test_tenants_whose_ids_are_keywords_or_start_with_pg_get_working_schemas():
    tenants = ["user", "order", "pg_acme", "pg-beta", "7eleven"]
    names = [schema_name("{tenant}", tenant) for tenant in tenants]
    assert names[:2] == ["user", "order"]
    assert all(not name.startswith("pg_") and name[0] == "_" for name in names[2:])
    assert len(set(names)) == len(names)
    try:
        with TenantStores(f"{postgres.server_dsn()}?schema={{tenant}}&pool_size=1") as stores:
            for tenant, name in zip(tenants, names, strict=True):
                store = stores.for_tenant(tenant)
                assert store.schema == name
                store.append("acc-1", "Account", 0, [_event()])
                assert store.stream_version("acc-1") == 1
    finally:
        _drop(*names)
