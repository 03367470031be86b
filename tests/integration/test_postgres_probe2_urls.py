"""PostgreSQL URLs: passwords never shown, even one libpq cannot read or one holding
``? # / @`` unencoded; ``connect_timeout`` read as libpq reads it (0: no limit)."""

from __future__ import annotations

import threading

import pytest
from psycopg.conninfo import conninfo_to_dict

import eventstore
from eventstore import StoreURLError
from eventstore.core.errors import redact_secrets, redact_url
from eventstore.postgres import PostgresEventStore
from eventstore.postgres.store import UNBOUNDED_CONNECT_WAIT
from eventstore.postgres.urls import postgres_dsn
from tests.support import postgres

SECRET = "Sup3rS3cret"


def _chain(exc: BaseException | None) -> str:
    """Every message in an exception's chain (causes and contexts)."""
    texts = []
    while exc is not None:
        texts.append(f"{exc!r} {exc}")
        exc = exc.__cause__ or exc.__context__
    return " | ".join(texts)


def _server_url(credentials: str, query: str) -> str:
    """The test server's URL with ``credentials`` (user:password) and ``query``."""
    parts = conninfo_to_dict(postgres.server_dsn())
    return (
        f"postgresql://{credentials}@{parts.get('host', '127.0.0.1')}:{parts.get('port', 5432)}"
        f"/{parts.get('dbname', 'postgres')}?{query}"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{SECRET}%zz@127.0.0.1:1/bank",  # libpq: invalid percent-encoded token
        f"postgresql://app:{SECRET}%zz?x@127.0.0.1:1/bank",
    ],
)
def test_a_url_libpq_cannot_read_is_named_without_its_password(url):
    with pytest.raises(StoreURLError, match="libpq cannot read it") as caught:
        eventstore.open_store(url)
    assert SECRET not in str(caught.value)
    assert SECRET not in _chain(caught.value)  # libpq's own error is not kept either
    assert "127.0.0.1:1/bank" in str(caught.value)


def test_a_password_with_an_unencoded_question_mark_opens_the_store_with_its_options():
    schema = postgres.fresh_schema()
    url = _server_url(f"postgres:{SECRET}?x#y", f"schema={schema}&pool_size=3")
    dsn, options = postgres_dsn(url)
    assert options == {"schema": schema, "pool_size": 3}
    assert conninfo_to_dict(dsn)["password"] == f"{SECRET}?x#y"
    assert SECRET not in redact_url(url) and f"schema={schema}" in redact_url(url)
    with eventstore.open_store(url) as store:  # the test server trusts: no password asked
        assert store.schema == schema
        store.append("acc-1", "Account", 0, [eventstore.NewEvent("e-1", "test.Opened", b"")])
        assert [e.event_id for e in store.read_all()] == ["e-1"]
        assert SECRET not in repr(store)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{SECRET}?x@h:5/db?schema=s", "postgresql://app:***@h:5/db?schema=s"),
        (f"postgresql://app:{SECRET}#x@h/db", "postgresql://app:***@h/db"),
        (f"postgresql://app:{SECRET}/x@h/db", "postgresql://app:***@h/db"),
        (f"postgresql://app:{SECRET}@x@h/db", "postgresql://app:***@h/db"),
        # '@' then '#' in the password: it ended at the first '@' ("Xy" shown as a host).
        (f"postgresql://app:Xy@9#{SECRET}@h:5432/db", "postgresql://app:***@h:5432/db"),
        # Ambiguous ('@ss/w?rd' reads as host, path and query): hidden whole, host too.
        (f"postgresql://app:p@ss/w?{SECRET}@h:5/db", "postgresql://app:***@h:5/db"),
        (f"postgresql://app:a/{SECRET}?x@h/db", "postgresql://app:***@h/db"),
        (
            f"postgresql://app:{SECRET}@h/db?password={SECRET}",
            "postgresql://app:***@h/db?password=***",
        ),
        # No password: an '@' in the query is not one, and a port is not one.
        (
            "postgresql://h:5432/db?application_name=a@b",
            "postgresql://h:5432/db?application_name=a@b",
        ),
        (
            "postgresql://h1:1,h2:2/db?application_name=a@b",
            "postgresql://h1:1,h2:2/db?application_name=a@b",
        ),
        (
            "postgresql://app@h/db?application_name=a@b",
            "postgresql://app@h/db?application_name=a@b",
        ),
    ],
)
def test_redact_url_hides_a_password_holding_reserved_characters_and_nothing_else(url, shown):
    assert redact_url(url) == shown


def test_a_password_holding_an_at_sign_then_a_hash_opens_the_store():
    # libpq was handed "9#<secret>@127.0.0.1" as the host, and said so in its error.
    schema = postgres.fresh_schema()
    url = _server_url(f"postgres:Xy@9#{SECRET}", f"schema={schema}")
    dsn, _ = postgres_dsn(url)
    assert conninfo_to_dict(dsn)["password"] == f"Xy@9#{SECRET}"
    with eventstore.open_store(url) as store:  # the test server trusts: no password asked
        assert store.schema == schema
        assert SECRET not in repr(store)


def test_a_quoted_token_holding_part_of_the_password_is_hidden_whole():
    location = f"postgresql://app:{SECRET}?x@127.0.0.1:5/bank"
    message = 'invalid URI query parameter: "x@127.0.0.1:5/bank", and "sslmode" is fine'
    assert redact_secrets(message, location) == (
        'invalid URI query parameter: "***", and "sslmode" is fine'
    )
    assert redact_secrets(f'token: "{SECRET[2:]}%zz"', location) == 'token: "***"'


def test_a_connect_timeout_that_is_not_a_number_is_named():
    with pytest.raises(StoreURLError, match="connect_timeout='abc' is not a number") as caught:
        eventstore.open_store(f"postgresql://app:{SECRET}@127.0.0.1:1/bank?connect_timeout=abc")
    assert "connect_timeout=10" in str(caught.value) and SECRET not in str(caught.value)


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_connect_timeout_of_zero_or_less_waits_for_connections_rather_than_failing_at_once(
    value,
):
    url = _server_url("postgres", f"schema={postgres.fresh_schema()}&connect_timeout={value}")
    with eventstore.open_store(url) as store:
        assert store.connect_wait == UNBOUNDED_CONNECT_WAIT
        start = threading.Barrier(4)
        failures: list[BaseException] = []

        def read() -> None:
            start.wait()
            try:
                for _ in range(5):
                    store.read_all()
            except BaseException as exc:
                failures.append(exc)

        readers = [threading.Thread(target=read) for _ in range(4)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(30)
        assert failures == []


def test_a_connect_timeout_keyword_that_is_not_a_number_is_refused():
    with pytest.raises(TypeError, match="connect_timeout must be a number of seconds"):
        PostgresEventStore("postgresql://app@127.0.0.1:1/bank", connect_timeout="10")  # type: ignore[arg-type]
