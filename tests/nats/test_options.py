"""Connection options shared by every NATS-facing constructor."""

from __future__ import annotations

import ssl

import pytest

from eventstore.nats import NatsEventBus, NatsOptions


def test_servers_come_as_a_url_a_comma_list_or_a_list() -> None:
    assert NatsOptions.of("nats://a:1").servers == ("nats://a:1",)
    assert NatsOptions.of("nats://a:1, nats://b:2").servers == ("nats://a:1", "nats://b:2")
    assert NatsOptions.of(["nats://a:1", "nats://b:2,nats://c:3"]).servers == (
        "nats://a:1",
        "nats://b:2",
        "nats://c:3",
    )
    with pytest.raises(ValueError, match="at least one"):
        NatsOptions.of([])


def test_a_ca_file_makes_a_verifying_tls_context() -> None:
    import certifi  # comes with jupyterlab's httpx (the notebook extra)

    assert NatsOptions.of("tls://a:1").tls_context() is None
    context = NatsOptions.of("tls://a:1", tls_ca=certifi.where()).tls_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED


def test_the_bus_takes_every_credential_keyword_and_refuses_unknown_ones() -> None:
    bus = NatsEventBus(
        ["nats://a:1", "nats://b:2"],
        user="u",
        password="p",
        nkeys_seed=None,
        user_credentials=None,
        tls_ca=None,
        reconnect_time_wait=0.1,
    )
    assert bus.options.servers == ("nats://a:1", "nats://b:2") and bus.options.user == "u"
    with pytest.raises(TypeError):
        NatsEventBus("nats://a:1", passwrd="p")
