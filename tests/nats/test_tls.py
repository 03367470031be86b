"""TLS end to end: a TLS-only embedded server, and every client side given a CA through its
``NatsOptions`` keywords (bus, relay through the bus, service host, transport).

The CA and certificates are throwaway ones made here with ``cryptography``; the
server is a real ``nats-server`` with ``tls {}`` in its config.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

x509 = pytest.importorskip("cryptography.x509")  # declared in the dev extra
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "bankaccount" / "generated"))

from account_es import SDK, DepositCommand, GetAccountQuery, OpenAccountCommand  # noqa: E402

from eventstore import NewEvent, new_event_id  # noqa: E402
from eventstore.nats import (  # noqa: E402
    EmbeddedNATS,
    NatsEventBus,
    NatsServiceHost,
    NatsTLSError,
    NatsTransport,
    Relay,
)
from eventstore.sqlite import SQLiteEventStore  # noqa: E402
from examples.bankaccount import service as bank  # noqa: E402


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _name(common: str) -> Any:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _ca(folder: Path, common: str) -> tuple[Any, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{common}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def _leaf(
    folder: Path, name: str, ca: Any, ca_key: ec.EllipticCurvePrivateKey, *, server: bool
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [
                    x509.ExtendedKeyUsageOID.SERVER_AUTH
                    if server
                    else x509.ExtendedKeyUsageOID.CLIENT_AUTH
                ]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = folder / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, _write_key(key, folder / f"{name}-key.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_path = _ca(folder, "test-ca")
    _, _, other = _ca(folder, "other-ca")
    server_cert, server_key = _leaf(folder, "server", ca, ca_key, server=True)
    client_cert, client_key = _leaf(folder, "client", ca, ca_key, server=False)
    return Pki(ca_path, server_cert, server_key, client_cert, client_key, other)


@pytest.fixture(scope="module")
def tls_nats(pki: Pki) -> Iterator[EmbeddedNATS]:
    with EmbeddedNATS(tls_cert=pki.server_cert, tls_key=pki.server_key) as server:
        yield server


def test_a_tls_server_says_so_in_its_url_and_config(tls_nats: EmbeddedNATS, pki: Pki) -> None:
    assert tls_nats.tls and tls_nats.url.startswith("tls://127.0.0.1:")
    config = tls_nats.config_path.read_text()
    assert "tls {" in config and str(pki.server_cert) in config and "verify" not in config


def test_the_server_refuses_half_a_tls_configuration(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        EmbeddedNATS(tls_cert=pki.server_cert)
    with pytest.raises(ValueError, match="tls_verify"):
        EmbeddedNATS(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_verify=True)
    with pytest.raises(FileNotFoundError, match="tls_ca"):
        EmbeddedNATS(
            tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=tmp_path / "missing.pem"
        )


def test_relay_and_bus_work_over_tls_with_the_ca(
    tls_nats: EmbeddedNATS, pki: Pki, tmp_path: Path
) -> None:
    async def story(store: SQLiteEventStore) -> tuple[int, list[str]]:
        async with NatsEventBus(
            tls_nats.url, stream="TLS_EVENTS", subject_prefix="tlsev", tls_ca=str(pki.ca)
        ) as bus:
            published = await Relay(store, bus).publish_pending()
            read = await asyncio.to_thread(bus.read_all, 0)
        return published, [e.event_id for e in read]

    with SQLiteEventStore(tmp_path / "tls.db") as store:
        ids = [new_event_id() for _ in range(5)]
        store.append("acc-1", "Account", 0, [NewEvent(i, "bank.v1.Deposited", b"x") for i in ids])
        published, read = run(story(store))
    assert published == 5
    assert read == ids


def test_commands_and_queries_travel_over_tls(
    tls_nats: EmbeddedNATS, pki: Pki, tmp_path: Path
) -> None:
    async def story(store: SQLiteEventStore) -> tuple[int, int]:
        async with (
            NatsServiceHost(
                tls_nats.url, *bank.services(store), allow_anonymous=True, tls_ca=str(pki.ca)
            ),
            NatsTransport(tls_nats.url, tls_ca=str(pki.ca)) as transport,
        ):
            sdk = SDK(transport)
            await sdk.account.open_account(OpenAccountCommand(account_id="t-1", owner="Tess"))
            await sdk.account.deposit(DepositCommand(account_id="t-1", amount=40))
            view = await sdk.account.get_account(GetAccountQuery(account_id="t-1"))
            return view.balance, view.version

    with SQLiteEventStore(tmp_path / "tls-bank.db") as store:
        assert run(story(store)) == (40, 2)


@pytest.mark.parametrize("ca", ["none", "other"])
def test_every_client_without_the_ca_fails_fast_naming_tls_and_the_fix(
    tls_nats: EmbeddedNATS, pki: Pki, tmp_path: Path, ca: str
) -> None:
    tls_ca = None if ca == "none" else str(pki.other_ca)

    async def bus() -> None:
        async with NatsEventBus(tls_nats.url, stream="TLS_NOCA", tls_ca=tls_ca):
            pass

    async def transport() -> None:
        async with NatsTransport(tls_nats.url, tls_ca=tls_ca):
            pass

    async def host(store: SQLiteEventStore) -> None:
        async with NatsServiceHost(
            tls_nats.url, *bank.services(store), allow_anonymous=True, tls_ca=tls_ca
        ):
            pass

    with SQLiteEventStore(tmp_path / "noca.db") as store:
        for attempt in (bus(), transport(), host(store)):
            start = time.monotonic()
            with pytest.raises(NatsTLSError) as failed:
                run(attempt)
            assert time.monotonic() - start < 10  # not the 15 s "no server answered"
            error = failed.value
            assert error.servers == [tls_nats.url] and error.tls_ca == tls_ca
            assert "certificate verify failed" in str(error)
            assert "tls_ca=" in str(error)


def test_a_server_that_verifies_clients_takes_only_a_client_certificate_of_its_ca(
    pki: Pki,
) -> None:
    async def connect(**tls: Any) -> bool:
        async with NatsEventBus(server.url, stream="TLS_MUTUAL", tls_ca=str(pki.ca), **tls):
            return True

    with EmbeddedNATS(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=pki.ca, tls_verify=True
    ) as server:
        assert "verify: true" in server.config_path.read_text()
        assert run(connect(tls_cert=str(pki.client_cert), tls_key=str(pki.client_key)))
        with pytest.raises(NatsTLSError) as refused:
            run(connect())
        assert "certificate" in str(refused.value)
