"""Fixtures for the NATS tests: a real nats-server with JetStream on 127.0.0.1, always stopped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventstore.nats import EmbeddedNATS


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNATS]:
    """One server for the whole session: tests that share it use their own stream names."""
    with EmbeddedNATS() as server:
        yield server


@pytest.fixture
def own_nats() -> Iterator[EmbeddedNATS]:
    """A server of this test's own, for tests that stop, kill or reconfigure it."""
    with EmbeddedNATS() as server:
        yield server
