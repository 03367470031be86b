"""Instrumentation hooks: callbacks around load, append, snapshot, publish and projection batches.

Core stays free of any telemetry library: it calls the hooks installed here
(``eventstore.otel`` installs one backed by OpenTelemetry). With no hook
installed each call costs one list check. ``operation`` wraps a unit of work
(a span, in OpenTelemetry terms); ``record`` adds to a metric; ``inject``
adds trace-context headers to an outgoing request (W3C ``traceparent``).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol

#: Operation names core reports.
LOAD = "load"
APPEND = "append"
SNAPSHOT = "snapshot"
PUBLISH = "publish"
PROJECTION_BATCH = "projection_batch"

#: Metric names core records (the Go original's), with their attributes.
EVENTS_APPENDED = "eventstore.events.appended"
SNAPSHOT_HITS = "eventstore.snapshots.hits"
SNAPSHOT_MISSES = "eventstore.snapshots.misses"
PROJECTION_EVENTS_HANDLED = "eventstore.projection.events_handled"
PROJECTION_LAG = "eventstore.projection.lag"
RELAY_LAG = "eventstore.relay.lag"


class Hook(Protocol):
    """What an instrumentation backend implements."""

    def operation(self, name: str, attributes: dict[str, Any]) -> Any:
        """A context manager around one operation; ``attributes`` may grow while it runs."""
        ...

    def record(self, metric: str, value: float, attributes: dict[str, Any]) -> None: ...

    def inject(self, headers: MutableMapping[str, str]) -> None: ...


_hooks: list[Hook] = []


def install(hook: Hook) -> None:
    """Call ``hook`` from now on (once, however often it is installed)."""
    if hook not in _hooks:
        _hooks.append(hook)


def uninstall(hook: Hook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def installed() -> list[Hook]:
    return list(_hooks)


@contextmanager
def operation(name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
    """Run the block as operation ``name``; set more attributes on the yielded dict."""
    if not _hooks:
        yield attributes
        return
    with ExitStack() as stack:
        for hook in list(_hooks):
            stack.enter_context(hook.operation(name, attributes))
        yield attributes


def record(metric: str, value: float = 1, **attributes: Any) -> None:
    for hook in _hooks:
        hook.record(metric, value, attributes)


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current trace context to ``headers`` (for a request leaving this process)."""
    for hook in _hooks:
        hook.inject(headers)
    return headers


__all__ = [
    "APPEND",
    "EVENTS_APPENDED",
    "LOAD",
    "PROJECTION_BATCH",
    "PROJECTION_EVENTS_HANDLED",
    "PROJECTION_LAG",
    "PUBLISH",
    "RELAY_LAG",
    "SNAPSHOT",
    "SNAPSHOT_HITS",
    "SNAPSHOT_MISSES",
    "Hook",
    "inject",
    "install",
    "installed",
    "operation",
    "record",
    "uninstall",
]
