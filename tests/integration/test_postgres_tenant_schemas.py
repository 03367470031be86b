"""Schema-per-tenant on a real PostgreSQL: a tenant whose schema name changed on
2026-12-02 is refused with the statement that renames it, instead of an empty store."""

from __future__ import annotations

import pytest

from eventstore import NewEvent, new_event_id
from eventstore.core.errors import StoreURLError
from eventstore.postgres import PostgresEventStore
from eventstore.tenancy import TenantStores, _schema_name_before_2026_12_02, schema_name
from tests.support import postgres


def test_a_tenant_under_its_former_schema_name_is_refused_with_the_rename() -> None:
    dsn = postgres.server_dsn()
    pattern = postgres.fresh_schema() + "_{tenant}"
    old = _schema_name_before_2026_12_02(pattern, "acme-corp")
    new = schema_name(pattern, "acme-corp")
    assert old != new
    with PostgresEventStore(dsn, schema=old) as before:  # written by the former release
        before.append("acc-1", "Account", 0, [NewEvent(new_event_id(), "t.Opened", b"")])
    template = dsn + ("&" if "?" in dsn else "?") + f"schema={pattern}"
    with TenantStores(template) as stores:
        with pytest.raises(StoreURLError) as caught:
            stores.for_tenant("acme-corp")
        assert f'ALTER SCHEMA "{old}" RENAME TO "{new}";' in str(caught.value)
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'ALTER SCHEMA "{old}" RENAME TO "{new}"')
        assert stores.for_tenant("acme-corp").stream_version("acc-1") == 1
        # A tenant whose name did not change opens without a look at the catalog.
        assert stores.for_tenant("acme").head_position() == 0
