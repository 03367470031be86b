"""An ``EmbeddedPostgres`` that cannot start says why in its error: the server's log, which
goes with the data folder the failed start removes, is read into the message first."""

from __future__ import annotations

import socket

import pytest

from eventstore.postgres import EmbeddedPostgres, EmbeddedPostgresError


def test_a_start_on_a_port_in_use_names_the_port_and_the_server_log_in_the_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedPostgresError) as caught:
            EmbeddedPostgres(base_dir=tmp_path, port=port, fsync=False).start()
    message = str(caught.value)
    assert "Address already in use" in message
    assert "FATAL: could not create any TCP/IP sockets" in message
    assert f"Port {port} on 127.0.0.1 is already in use: pass another port=" in message
    assert "See the output above" not in message
    assert "Address already in use" in caught.value.log  # the log's end, kept
    assert list(tmp_path.iterdir()) == []  # the data folder (and its log) is gone
