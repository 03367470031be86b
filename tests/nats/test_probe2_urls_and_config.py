"""Server URLs and the embedded server's configuration, checked before anything connects.

Probe 2, defects 3, 8 and 9: an empty URL (an unset environment variable) made nats-py
spin at 100% CPU for ever; a malformed one failed inside nats-py with an error naming
neither the URL nor the fix; a non-ASCII store directory or password could not start
``EmbeddedNATS``. Real nats-server where one is needed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventstore.nats import (
    EmbeddedNATS,
    NatsEventBus,
    NatsOptions,
    NatsServerStartError,
    NatsServiceHost,
    NatsTransport,
    NatsUrlError,
)


@pytest.mark.parametrize("servers", ["", " ", ",", " , ", [""], [",", " "]])
def test_a_server_list_with_no_url_in_it_is_refused_at_once_by_every_constructor(
    servers: str | list[str],
) -> None:
    with pytest.raises(NatsUrlError, match="at least one NATS server URL") as caught:
        NatsOptions.of(servers)
    assert isinstance(caught.value, ValueError)
    assert "environment variable" in str(caught.value)
    with pytest.raises(NatsUrlError):
        NatsEventBus(servers)
    with pytest.raises(NatsUrlError):
        NatsTransport(servers)
    with pytest.raises(NatsUrlError):
        NatsServiceHost(servers, allow_anonymous=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nats://127.0.0.1:4222x", "port"),
        ("nats://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:4222", "scheme 'http'"),
        ("nats://:4222", "no host"),
        ("nats://a b:4222", "space"),
    ],
)
def test_a_malformed_url_is_refused_naming_it_and_the_form_expected(url: str, reason: str) -> None:
    with pytest.raises(NatsUrlError) as caught:
        NatsTransport(f"nats://127.0.0.1:4222,{url}")
    error = caught.value
    assert error.url == url and reason in str(error)
    assert "nats://host:port" in str(error)


def test_the_url_forms_nats_py_dials_are_accepted() -> None:
    forms = [
        "nats://127.0.0.1:4222",
        "tls://nats.example.com:4222",
        "nats://user:secret@127.0.0.1:4222",
        "nats://[::1]:4222",
        "127.0.0.1:4222",
        "localhost",
        "nats://localhost",
    ]
    assert NatsOptions.of(forms).servers == tuple(forms)
    assert NatsOptions.of("ws://a:8080/nats, wss://b:443").servers == (
        "ws://a:8080/nats",
        "wss://b:443",
    )
    with pytest.raises(NatsUrlError, match="websocket"):
        NatsOptions.of(["nats://a:4222", "ws://b:8080"])


def test_embedded_nats_starts_with_a_non_ascii_store_dir_and_password(tmp_path: Path) -> None:
    store_dir = tmp_path / "données"
    password = 'mot-de-passe-é "quoted" \\ back'
    with EmbeddedNATS(store_dir=store_dir, user="josé", password=password) as server:

        async def scenario() -> None:
            async with NatsEventBus(
                server.url, stream="P2_UTF8", user="josé", password=password
            ) as bus:
                assert bus.client.is_connected

        asyncio.run(scenario())
        assert any(store_dir.rglob("*")), "JetStream wrote into the non-ASCII store_dir"


def test_a_server_that_cannot_parse_its_configuration_says_where_to_look(tmp_path: Path) -> None:
    server = EmbeddedNATS(extra_config="this is { not valid", startup_timeout=5)
    try:
        with pytest.raises(NatsServerStartError) as caught:
            server.start()
        assert "configuration file" in str(caught.value)
    finally:
        server.close()
